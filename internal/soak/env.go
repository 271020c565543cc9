package soak

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgcluster"
)

// effectsDDL is the suite's own table: one row per handler execution.
const effectsDDL = `CREATE TABLE soak_effects (
	"key" text NOT NULL,
	"instance" text NOT NULL,
	"nonce" text NOT NULL,
	"at" timestamptz NOT NULL DEFAULT now()
)`

// env is one scenario's database on the suite's cluster.
type env struct {
	cluster *pgcluster.Cluster
	admin   *sql.DB // superuser, maintenance database
	name    string  // database name
	url     string
	faults  *Faults
}

// newEnv creates a migrated database for one scenario.
func newEnv(ctx context.Context, c *pgcluster.Cluster, admin *sql.DB, name string) (*env, error) {
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+quoteDB(name)); err != nil {
		return nil, fmt.Errorf("soak: create database: %w", err)
	}
	e := &env{cluster: c, admin: admin, name: name, url: c.URL(name)}
	e.faults = &Faults{cluster: c, admin: admin, dbName: name}
	db, err := database.Open(e.url)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	dir, err := migration.Embedded()
	if err != nil {
		return nil, err
	}
	if _, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{}); err != nil {
		return nil, fmt.Errorf("soak: migrate: %w", err)
	}
	if _, err := db.ExecContext(ctx, effectsDDL); err != nil {
		return nil, fmt.Errorf("soak: create soak_effects: %w", err)
	}
	return e, nil
}

func (e *env) drop(ctx context.Context) {
	_, _ = e.admin.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+quoteDB(e.name)+" WITH (FORCE)")
}
