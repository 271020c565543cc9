// Package schemadiff compares PostgreSQL schemas two ways and says what
// differs in words a person understands:
//
//   - [Inspect] and [Compare] read the system catalog: tables, columns with
//     their order, types (with precision), collations, nullability,
//     defaults, identity and generation,
//     constraints with their names and definitions, and indexes with their
//     definitions. This catches what Atlas's diff ignores: column order and
//     constraint names.
//   - [AtlasDiff] runs the Atlas library's inspect-and-diff in both
//     directions and lists the statements that would turn one schema into
//     the other.
package schemadiff

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/lib/pq"
)

// IgnoredTables are bookkeeping tables that are not part of the schema:
// Atlas's revisions table and Prisma's migrations table.
var IgnoredTables = []string{"atlas_schema_revisions", "_prisma_migrations"}

// Snapshot is the catalog description of one schema.
type Snapshot struct {
	Schema string
	Tables []Table
}

// Table is a table with its columns in order, constraints and indexes.
type Table struct {
	Name        string
	Columns     []Column
	Constraints []Constraint
	Indexes     []Index
}

// Column is a table column.
type Column struct {
	Name    string
	Type    string // format_type: "timestamp(3) without time zone"
	NotNull bool
	Default string // pg_get_expr of the default (of the expression of a generated column), "" for none
	// Collation is the column's collation when it is not its type's
	// default, quoted as in COLLATE: "C"; "" for the default.
	Collation string
	// Identity is attidentity: "a" GENERATED ALWAYS, "d" BY DEFAULT, "" none.
	Identity string
	// Generated is attgenerated: "s" stored, "v" virtual, "" not generated.
	Generated string
}

// Constraint is a table constraint: primary key, unique, check, foreign key.
type Constraint struct {
	Name string
	Kind string // "primary key", "unique", "check", "foreign key", "exclusion"
	Def  string // pg_get_constraintdef
}

// Index is an index, with the definition PostgreSQL prints for it.
type Index struct {
	Name string
	Def  string // pg_get_indexdef, without the schema qualifier
}

// Inspect reads the tables of schemaName (default "public") from db,
// leaving out [IgnoredTables].
func Inspect(ctx context.Context, db *sql.DB, schemaName string) (*Snapshot, error) {
	if schemaName == "" {
		schemaName = "public"
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("schemadiff: inspect: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// With the schema on the search path, constraint and default
	// definitions print unqualified names, so two schemas compare equal.
	if _, err := tx.ExecContext(ctx, "SET LOCAL search_path = "+pq.QuoteIdentifier(schemaName)); err != nil {
		return nil, fmt.Errorf("schemadiff: inspect: %w", err)
	}
	s := &Snapshot{Schema: schemaName}
	rows, err := tx.QueryContext(ctx, `
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT (c.relname = ANY($2))
ORDER BY c.relname`, schemaName, pq.Array(IgnoredTables))
	if err != nil {
		return nil, fmt.Errorf("schemadiff: list tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, fmt.Errorf("schemadiff: list tables: %w", err)
		}
		names = append(names, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("schemadiff: list tables: %w", err)
	}
	s.Tables = make([]Table, len(names))
	byName := make(map[string]*Table, len(names))
	for i, n := range names {
		s.Tables[i].Name = n
		byName[n] = &s.Tables[i]
	}

	if err := scan(ctx, tx, `
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
       coalesce(CASE WHEN a.attcollation <> ty.typcollation THEN quote_ident(co.collname) END, ''),
       a.attidentity::text, a.attgenerated::text
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum`, schemaName, func(rows *sql.Rows) error {
		var tbl string
		var col Column
		if err := rows.Scan(&tbl, &col.Name, &col.Type, &col.NotNull, &col.Default, &col.Collation, &col.Identity, &col.Generated); err != nil {
			return err
		}
		if t, ok := byName[tbl]; ok {
			t.Columns = append(t.Columns, col)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("schemadiff: read columns: %w", err)
	}

	if err := scan(ctx, tx, `
SELECT c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1
ORDER BY c.relname, con.conname`, schemaName, func(rows *sql.Rows) error {
		var tbl, kind string
		var con Constraint
		if err := rows.Scan(&tbl, &con.Name, &kind, &con.Def); err != nil {
			return err
		}
		con.Kind = constraintKinds[kind]
		if con.Kind == "" {
			con.Kind = kind
		}
		if t, ok := byName[tbl]; ok {
			t.Constraints = append(t.Constraints, con)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("schemadiff: read constraints: %w", err)
	}

	if err := scan(ctx, tx, `
SELECT t.relname, i.relname, pg_get_indexdef(i.oid)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = $1
  -- Indexes backing a primary key or unique constraint are compared as constraints.
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.oid AND con.contype IN ('p', 'u', 'x'))
ORDER BY t.relname, i.relname`, schemaName, func(rows *sql.Rows) error {
		var tbl string
		var idx Index
		if err := rows.Scan(&tbl, &idx.Name, &idx.Def); err != nil {
			return err
		}
		// pg_get_indexdef qualifies the table whatever the search path.
		for _, q := range []string{schemaName, pq.QuoteIdentifier(schemaName)} {
			idx.Def = strings.Replace(idx.Def, " ON "+q+".", " ON ", 1)
		}
		if t, ok := byName[tbl]; ok {
			t.Indexes = append(t.Indexes, idx)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("schemadiff: read indexes: %w", err)
	}
	return s, nil
}

var constraintKinds = map[string]string{
	"p": "primary key", "u": "unique", "c": "check", "f": "foreign key", "x": "exclusion", "t": "trigger",
}

func scan(ctx context.Context, tx *sql.Tx, query, schemaName string, each func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, query, schemaName)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Table returns the table named name, or nil.
func (s *Snapshot) Table(name string) *Table {
	i := slices.IndexFunc(s.Tables, func(t Table) bool { return t.Name == name })
	if i < 0 {
		return nil
	}
	return &s.Tables[i]
}
