package schemadiff_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
	"github.com/klozd/api/internal/schemadiff"
	"github.com/klozd/api/spec"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// specDB returns a database built by running sql, the spec or a mutation.
func specDB(t *testing.T, sql string) *sql.DB {
	t.Helper()
	db := pgtest.Open(t, pgtest.EmptyURL(t))
	_, err := db.ExecContext(context.Background(), sql)
	require.NoError(t, err)
	return db
}

func inspect(t *testing.T, db *sql.DB) *schemadiff.Snapshot {
	t.Helper()
	s, err := schemadiff.Inspect(context.Background(), db, "public")
	require.NoError(t, err)
	return s
}

// The migrations build exactly the spec: by catalog and by Atlas, both ways.
func TestMigrationsEqualSpec(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	migrated := pgtest.DB(t)
	want := specDB(t, spec.MigrationSQL)

	ws, gs := inspect(t, want), inspect(t, migrated)
	require.Len(t, ws.Tables, 2, "the spec has two tables")
	require.Len(t, ws.Table("auth_attempts").Columns, 8)
	assert.Empty(t, schemadiff.Compare(ws, gs))
	assert.Empty(t, schemadiff.Compare(gs, ws))

	toSpec, err := schemadiff.AtlasDiff(ctx, migrated, want, "public")
	require.NoError(t, err)
	assert.Empty(t, toSpec)
	fromSpec, err := schemadiff.AtlasDiff(ctx, want, migrated, "public")
	require.NoError(t, err)
	assert.Empty(t, fromSpec)
}

// Each mutation of the spec is caught and named. Atlas alone misses column
// order and a renamed primary key; the catalog comparison does not.
func TestMutationsAreNamed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		old, new    string
		want        []string // substrings of one catalog difference
		atlasSeesIt bool
	}{
		{
			name: "dropped index",
			old:  `CREATE INDEX "auth_attempts_ip_idx" ON "auth_attempts"("ip");`, new: "",
			want:        []string{"index auth_attempts_ip_idx on auth_attempts", "missing"},
			atlasSeesIt: true,
		},
		{
			name: "varchar for text",
			old:  `"email" TEXT NOT NULL,`, new: `"email" VARCHAR(255) NOT NULL,`,
			want:        []string{"column auth_attempts.email", "type is character varying(255), expected text"},
			atlasSeesIt: true,
		},
		{
			name: "timestamptz",
			old:  `"lockedUntil" TIMESTAMP(3),`, new: `"lockedUntil" TIMESTAMPTZ(3),`,
			want:        []string{"column auth_attempts.lockedUntil", "type is timestamp(3) with time zone, expected timestamp(3) without time zone"},
			atlasSeesIt: true,
		},
		{
			name: "missing default",
			old:  `"failuresCount" INTEGER NOT NULL DEFAULT 0,`, new: `"failuresCount" INTEGER NOT NULL,`,
			want:        []string{"column auth_attempts.failuresCount", "default is none, expected 0"},
			atlasSeesIt: true,
		},
		{
			name: "nullable",
			old:  `"expiresAt" TIMESTAMP(3) NOT NULL,`, new: `"expiresAt" TIMESTAMP(3),`,
			want:        []string{"column idempotency_records.expiresAt", "is nullable, expected NOT NULL"},
			atlasSeesIt: true,
		},
		{
			name: "swapped column order",
			old:  "\"email\" TEXT NOT NULL,\n    \"ip\" TEXT,", new: "\"ip\" TEXT,\n    \"email\" TEXT NOT NULL,",
			want: []string{"table auth_attempts", "columns are in the order (id, ip, email,", "expected (id, email, ip,"},
		},
		{
			name: "renamed primary key",
			old:  `CONSTRAINT "auth_attempts_pkey" PRIMARY KEY`, new: `CONSTRAINT "auth_attempts_pk" PRIMARY KEY`,
			want: []string{"constraint auth_attempts_pkey on auth_attempts", "missing (expected PRIMARY KEY (id))"},
		},
		{
			name: "extra table",
			old:  "", new: `CREATE TABLE "sessions" ("id" TEXT PRIMARY KEY);`,
			want:        []string{"table sessions", "unexpected"},
			atlasSeesIt: true,
		},
		{
			name: "unique index made plain",
			old:  `CREATE UNIQUE INDEX "idempotency_records_key_route_key"`, new: `CREATE INDEX "idempotency_records_key_route_key"`,
			want:        []string{"index idempotency_records_key_route_key on idempotency_records", "is CREATE INDEX", "expected CREATE UNIQUE INDEX"},
			atlasSeesIt: true,
		},
	}
	// The expected schema is the one the migrations build (equal to the spec,
	// as TestMigrationsEqualSpec shows); each case mutates a copy of the spec.
	migrated := pgtest.DB(t)
	gs := inspect(t, migrated)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mutated := spec.MigrationSQL + "\n" + tc.new
			if tc.old != "" {
				require.Contains(t, spec.MigrationSQL, tc.old, "precondition: the mutation applies")
				mutated = strings.Replace(spec.MigrationSQL, tc.old, tc.new, 1)
			}
			got := specDB(t, mutated)
			diffs := schemadiff.Compare(gs, inspect(t, got))
			require.NotEmpty(t, diffs, "the mutation is caught")
			var lines []string
			for _, d := range diffs {
				lines = append(lines, d.String())
			}
			assert.True(t, containsAll(lines, tc.want), "a difference names %q; got:\n%s", tc.want, strings.Join(lines, "\n"))

			stmts, err := schemadiff.AtlasDiff(context.Background(), got, migrated, "public")
			require.NoError(t, err)
			assert.Equal(t, tc.atlasSeesIt, len(stmts) > 0, "atlas statements: %q", stmts)
		})
	}
}

func containsAll(lines []string, subs []string) bool {
	for _, l := range lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return true
		}
	}
	return false
}
