package database

import (
	"context"
	"database/sql"
	"errors"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/klozd/api/ent"
)

// ErrTxManaged is returned by Commit on an ent transaction from [EntTx]:
// whoever began the transaction commits it.
var ErrTxManaged = errors.New("database: this transaction is committed by the code that began it (the idempotency middleware); return from the handler instead")

// EntTx returns an ent transaction that runs on tx, which the caller began
// and will end: its statements go through tx, with every time.Time as UTC
// milliseconds as [NewClient]'s do; its Commit returns [ErrTxManaged] and
// commits nothing; its Rollback rolls tx back, after which the caller's
// own statements on tx fail with sql.ErrTxDone.
func EntTx(ctx context.Context, tx *sql.Tx) (*ent.Tx, error) {
	drv := heldDriver{utcDriver{entsql.NewDriver(dialect.Postgres, entsql.Conn{ExecQuerier: tx})}, tx}
	return ent.NewClient(ent.Driver(drv)).BeginTx(ctx, nil)
}

// heldDriver is the ent driver of [EntTx]: beginning a transaction on it
// returns the caller's.
type heldDriver struct {
	utcDriver
	tx *sql.Tx
}

func (d heldDriver) Tx(ctx context.Context) (dialect.Tx, error) { return d.BeginTx(ctx, nil) }

func (d heldDriver) BeginTx(context.Context, *sql.TxOptions) (dialect.Tx, error) {
	return utcTx{heldTx{Conn: entsql.Conn{ExecQuerier: d.tx}, tx: d.tx}}, nil
}

func (heldDriver) Close() error { return nil }

type heldTx struct {
	entsql.Conn
	tx *sql.Tx
}

func (heldTx) Commit() error     { return ErrTxManaged }
func (t heldTx) Rollback() error { return t.tx.Rollback() }
