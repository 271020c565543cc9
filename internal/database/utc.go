package database

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/klozd/api/ent/schema"
)

// utcDriver is the ent driver of [NewClient]: it hands every time.Time
// argument to the database as UTC milliseconds, the only form a
// timestamp(3) column stores as the same instant.
type utcDriver struct{ *entsql.Driver }

func (d utcDriver) Exec(ctx context.Context, query string, args, v any) error {
	return d.Driver.Exec(ctx, query, utcArgs(args), v)
}

func (d utcDriver) Query(ctx context.Context, query string, args, v any) error {
	return d.Driver.Query(ctx, query, utcArgs(args), v)
}

func (d utcDriver) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return d.Driver.ExecContext(ctx, query, utcValues(args)...)
}

func (d utcDriver) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.Driver.QueryContext(ctx, query, utcValues(args)...)
}

func (d utcDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	return d.BeginTx(ctx, nil)
}

func (d utcDriver) BeginTx(ctx context.Context, opts *sql.TxOptions) (dialect.Tx, error) {
	tx, err := d.Driver.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return utcTx{tx}, nil
}

// utcTx is a transaction of [utcDriver].
type utcTx struct{ dialect.Tx }

func (t utcTx) Exec(ctx context.Context, query string, args, v any) error {
	return t.Tx.Exec(ctx, query, utcArgs(args), v)
}

func (t utcTx) Query(ctx context.Context, query string, args, v any) error {
	return t.Tx.Query(ctx, query, utcArgs(args), v)
}

// errNoContext is returned when the wrapped transaction lacks a method the
// generated client's ExecContext or QueryContext needs.
var errNoContext = errors.New("database: the transaction does not support ExecContext and QueryContext")

func (t utcTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ex, ok := t.Tx.(interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	})
	if !ok {
		return nil, errNoContext
	}
	return ex.ExecContext(ctx, query, utcValues(args)...)
}

func (t utcTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	q, ok := t.Tx.(interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	})
	if !ok {
		return nil, errNoContext
	}
	return q.QueryContext(ctx, query, utcValues(args)...)
}

// utcArgs is [utcValues] on the arguments of ent's Exec and Query, which
// are a []any.
func utcArgs(args any) any {
	if vs, ok := args.([]any); ok {
		return utcValues(vs)
	}
	return args
}

// utcValues returns vs with each time.Time (also behind a pointer or in a
// sql.NullTime) in UTC, truncated to the millisecond. It copies vs only
// when something changes.
func utcValues(vs []any) []any {
	var out []any
	for i, v := range vs {
		n, changed := utcValue(v)
		if !changed {
			continue
		}
		if out == nil {
			out = append([]any(nil), vs...)
		}
		out[i] = n
	}
	if out == nil {
		return vs
	}
	return out
}

func utcValue(v any) (any, bool) {
	switch t := v.(type) {
	case time.Time:
		return schema.UTCMillis(t), true
	case *time.Time:
		if t != nil {
			return schema.UTCMillis(*t), true
		}
	case sql.NullTime:
		if t.Valid {
			return sql.NullTime{Time: schema.UTCMillis(t.Time), Valid: true}, true
		}
	}
	return v, false
}
