package soak

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/devdb"
	"github.com/klozd/api/internal/faultproxy"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgcluster"
)

// effectsDDL is the suite's own table: one row per handler execution
// whose side effect landed. "started" is when the handler began (the
// instance's clock), "landed" when its INSERT ran on the server (the
// server's clock; both are this machine's), "ended" when the handler
// returned and "status" what it answered, written by the suite after the
// load from what the instance recorded (see recordEnds). A run spans [started, max(ended, landed)]:
// a statement held in the network may land after its handler returned.
const effectsDDL = `CREATE TABLE soak_effects (
	"key" text NOT NULL,
	"instance" text NOT NULL,
	"nonce" text NOT NULL,
	"at" timestamptz NOT NULL DEFAULT now(),
	"started" timestamptz,
	"landed" timestamptz NOT NULL DEFAULT clock_timestamp(),
	"ended" timestamptz,
	"status" integer
)`

// txOrdersDDL is the transactional endpoint's table: one row per order
// committed, together with its key's stored response (see
// instance.createTxOrder and checkTxOrders).
const txOrdersDDL = `CREATE TABLE soak_tx_orders (
	"key" text NOT NULL,
	"nonce" text NOT NULL,
	"instance" text NOT NULL,
	"at" timestamptz NOT NULL DEFAULT now()
)`

// env is one scenario's database on the suite's cluster.
type env struct {
	url    string
	faults *Faults
	drop   func() // drops the database

	// Set by runScenario for the faults: the instances, each one's fault
	// proxy (proxied scenarios), the keys, and a client for the requests
	// a fault sends itself.
	insts   []*instance
	proxies []*faultproxy.Proxy
	keys    map[string]*keyState
	cl      *client
}

// newEnv creates a migrated database for one scenario on dev's server,
// the cluster c, administered through admin.
func newEnv(ctx context.Context, c *pgcluster.Cluster, admin *sql.DB, dev *devdb.Server) (*env, error) {
	dbURL, drop, err := dev.Create(ctx, "soak")
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(dbURL)
	if err == nil {
		err = (&env{url: dbURL}).prepare(ctx)
	}
	if err != nil {
		drop()
		return nil, err
	}
	name := strings.TrimPrefix(u.Path, "/")
	return &env{url: dbURL, drop: drop, faults: &Faults{cluster: c, admin: admin, dbName: name}}, nil
}

// prepare applies the migrations and creates the suite's own table.
func (e *env) prepare(ctx context.Context) error {
	db, err := database.Open(e.url)
	if err != nil {
		return err
	}
	defer db.Close()
	dir, err := migration.Embedded()
	if err != nil {
		return err
	}
	if _, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{}); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := db.ExecContext(ctx, effectsDDL); err != nil {
		return fmt.Errorf("create soak_effects: %w", err)
	}
	if _, err := db.ExecContext(ctx, txOrdersDDL); err != nil {
		return fmt.Errorf("create soak_tx_orders: %w", err)
	}
	return nil
}
