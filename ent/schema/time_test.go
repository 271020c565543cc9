package schema_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/ent"
	"github.com/klozd/api/ent/authattempt"
	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	processTZ  = "America/New_York"
	databaseTZ = "Asia/Tokyo"
)

// TestTimesAreStoredAsUTC runs itself again in a process with
// TZ=America/New_York, on a database whose default TimeZone is Asia/Tokyo,
// and checks that what lands in the timestamp(3) columns is UTC.
func TestTimesAreStoredAsUTC(t *testing.T) {
	if time.Local.String() != processTZ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTimesAreStoredAsUTC$", "-test.v")
		cmd.Env = append(os.Environ(), "TZ="+processTZ)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "child process with TZ=%s failed:\n%s", processTZ, out)
		require.Contains(t, string(out), "--- PASS: TestTimesAreStoredAsUTC", "child ran the test:\n%s", out)
		return
	}
	ctx := context.Background()
	url := pgtest.URL(t)
	admin := pgtest.Open(t, url)
	var dbName string
	require.NoError(t, admin.QueryRowContext(ctx, `SELECT current_database()`).Scan(&dbName))
	_, err := admin.ExecContext(ctx, `ALTER DATABASE `+pq.QuoteIdentifier(dbName)+` SET timezone = '`+databaseTZ+`'`)
	require.NoError(t, err)

	// A session without our settings sees the database default; ours sees UTC.
	raw, err := sql.Open("postgres", strings.Replace(url, "timezone=UTC", "application_name=raw", 1))
	require.NoError(t, err)
	defer raw.Close()
	var tz string
	require.NoError(t, raw.QueryRowContext(ctx, `SHOW timezone`).Scan(&tz))
	require.Equal(t, databaseTZ, tz, "precondition: the database default time zone is not UTC")
	db := pgtest.Open(t, url)
	require.NoError(t, db.QueryRowContext(ctx, `SHOW timezone`).Scan(&tz))
	assert.Equal(t, "UTC", tz)

	ny, err := time.LoadLocation(processTZ)
	require.NoError(t, err)
	lockedUntil := time.Date(2026, 3, 1, 9, 30, 0, 123_456_789, ny) // 14:30:00.123456789 UTC
	client := database.NewClient(db)
	before := time.Now()
	created, err := client.AuthAttempt.Create().
		SetEmail("a@example.com").
		SetIP("192.0.2.1").
		SetLockedUntil(lockedUntil).
		Save(ctx)
	require.NoError(t, err)

	var stored, createdAt, updatedAt string
	var createdSkew float64
	require.NoError(t, raw.QueryRowContext(ctx, `SELECT "lockedUntil"::text, "createdAt"::text, "updatedAt"::text,
		abs(extract(epoch FROM "createdAt" - (now() AT TIME ZONE 'UTC')))
		FROM auth_attempts WHERE id = $1`, created.ID).Scan(&stored, &createdAt, &updatedAt, &createdSkew))
	assert.Equal(t, "2026-03-01 14:30:00.123", stored, "a New York time is stored as the UTC instant, truncated to ms")
	assert.Less(t, createdSkew, 60.0, "createdAt %s is UTC now", createdAt)
	var createdToUpdated float64
	require.NoError(t, raw.QueryRowContext(ctx, `SELECT abs(extract(epoch FROM "updatedAt" - "createdAt")) FROM auth_attempts WHERE id = $1`,
		created.ID).Scan(&createdToUpdated))
	assert.Less(t, createdToUpdated, 1.0, "updatedAt (%s) is set on create, with createdAt (%s)", updatedAt, createdAt)

	// What Save returned is what a read returns.
	got, err := client.AuthAttempt.Get(ctx, created.ID)
	require.NoError(t, err)
	assert.True(t, got.LockedUntil.Equal(*created.LockedUntil), "returned %v, read %v", created.LockedUntil, got.LockedUntil)
	assert.True(t, got.LockedUntil.Equal(lockedUntil.Truncate(time.Millisecond)))
	assert.True(t, got.CreatedAt.Equal(created.CreatedAt))
	assert.WithinDuration(t, before, got.CreatedAt, time.Minute)
	assert.Equal(t, time.UTC, created.LockedUntil.Location())

	// The database default, evaluated in our UTC session, is UTC too.
	var id string
	require.NoError(t, db.QueryRowContext(ctx, `INSERT INTO auth_attempts (id, email, "updatedAt")
		VALUES ('c-default', 'b@example.com', now() AT TIME ZONE 'UTC') RETURNING id`).Scan(&id))
	require.NoError(t, raw.QueryRowContext(ctx, `SELECT abs(extract(epoch FROM "lastAttemptAt" - (now() AT TIME ZONE 'UTC')))
		FROM auth_attempts WHERE id = $1`, id).Scan(&createdSkew))
	assert.Less(t, createdSkew, 60.0, "DEFAULT CURRENT_TIMESTAMP in a UTC session stores UTC")

	// updatedAt moves on every update: set it far in the past behind ent's
	// back, so that only the schema's UpdateDefault can bring it to now.
	_, err = raw.ExecContext(ctx, `UPDATE auth_attempts SET "updatedAt" = '2000-01-01' WHERE id = $1`, created.ID)
	require.NoError(t, err)
	n, err := client.AuthAttempt.Update().Where(authattempt.ID(created.ID)).AddFailuresCount(1).Save(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	again, err := client.AuthAttempt.Get(ctx, created.ID)
	require.NoError(t, err)
	assert.True(t, again.UpdatedAt.After(time.Date(2000, 1, 2, 0, 0, 0, 0, time.UTC)), "updatedAt %v was set by the update", again.UpdatedAt)
	assert.WithinDuration(t, time.Now(), again.UpdatedAt, time.Minute)
	var updatedSkew float64
	require.NoError(t, raw.QueryRowContext(ctx, `SELECT abs(extract(epoch FROM "updatedAt" - (now() AT TIME ZONE 'UTC')))
		FROM auth_attempts WHERE id = $1`, created.ID).Scan(&updatedSkew))
	assert.Less(t, updatedSkew, 60.0, "updatedAt is stored as UTC now")
	assert.Equal(t, 1, again.FailuresCount)
}

// The hook sees the fields of create and update mutations; the client's
// driver also normalises the times of the paths it does not see: the
// update set of an upsert, Modify, and raw ExecContext.
func TestEveryWritePathStoresUTC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.DB(t)
	client := database.NewClient(db)
	ny, err := time.LoadLocation(processTZ)
	require.NoError(t, err)
	at := func(minute int) time.Time { return time.Date(2026, 3, 1, 9, minute, 0, 123_999_999, ny) }
	want := func(minute int) string { return fmt.Sprintf("2026-03-01 14:%02d:00.123", minute) }
	a, err := client.AuthAttempt.Create().SetEmail("u@example.com").SetIP("192.0.2.1").Save(ctx)
	require.NoError(t, err)
	stored := func() string {
		t.Helper()
		var s string
		require.NoError(t, db.QueryRowContext(ctx, `SELECT "lockedUntil"::text FROM auth_attempts WHERE id = $1`, a.ID).Scan(&s))
		return s
	}
	upsert := func() *ent.AuthAttemptCreate {
		return client.AuthAttempt.Create().SetEmail("u@example.com").SetIP("192.0.2.1")
	}

	err = upsert().OnConflictColumns(authattempt.FieldEmail, authattempt.FieldIP).
		Update(func(u *ent.AuthAttemptUpsert) { u.SetLockedUntil(at(1)) }).Exec(ctx)
	require.NoError(t, err)
	assert.Equal(t, want(1), stored(), "upsert update set")

	err = upsert().OnConflictColumns(authattempt.FieldEmail, authattempt.FieldIP).SetLockedUntil(at(2)).Exec(ctx)
	require.NoError(t, err)
	assert.Equal(t, want(2), stored(), "UpsertOne setter")

	err = upsert().SetLockedUntil(at(3)).OnConflictColumns(authattempt.FieldEmail, authattempt.FieldIP).UpdateNewValues().Exec(ctx)
	require.NoError(t, err)
	assert.Equal(t, want(3), stored(), "UpdateNewValues")

	_, err = client.AuthAttempt.Update().Where(authattempt.ID(a.ID)).
		Modify(func(u *entsql.UpdateBuilder) { u.Set(authattempt.FieldLockedUntil, at(4)) }).Save(ctx)
	require.NoError(t, err)
	assert.Equal(t, want(4), stored(), "Modify")

	_, err = client.ExecContext(ctx, `UPDATE auth_attempts SET "lockedUntil" = $1 WHERE id = $2`, at(5), a.ID)
	require.NoError(t, err)
	assert.Equal(t, want(5), stored(), "ExecContext")

	tx, err := client.Tx(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.AuthAttempt.Create().SetEmail("u@example.com").SetIP("192.0.2.1").
		OnConflictColumns(authattempt.FieldEmail, authattempt.FieldIP).SetLockedUntil(at(6)).Exec(ctx))
	_, err = tx.ExecContext(ctx, `UPDATE auth_attempts SET "failuresCount" = 7 WHERE "lockedUntil" = $1`, at(6))
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	assert.Equal(t, want(6), stored(), "in a transaction")
	got, err := client.AuthAttempt.Get(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, 7, got.FailuresCount, "a time argument matches the stored time")
}

func TestNewIDIsCuid(t *testing.T) {
	client := pgtest.Client(t)
	seen := map[string]bool{}
	for range 50 {
		a, err := client.AuthAttempt.Create().SetEmail("c@example.com").Save(context.Background())
		require.NoError(t, err)
		require.Len(t, a.ID, 25)
		require.True(t, strings.HasPrefix(a.ID, "c"), a.ID)
		require.False(t, seen[a.ID])
		seen[a.ID] = true
	}
}
