package soak

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

// Two runs of one key overlap when the later starts before the earlier
// ended or landed; the earlier handler ran past its lease only when it
// was itself still running then.
func TestFindOverlaps(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	run := func(key, inst string, started, ended, landed int) effectRun {
		r := effectRun{key: key, instance: inst, nonce: key + inst, started: at(started), landed: at(landed)}
		if ended >= 0 {
			r.ended = at(ended)
		}
		return r
	}
	runs := []effectRun{
		// One after the other: no overlap, even back to back.
		run("seq", "i0", 0, 10, 5), run("seq", "i1", 10, 20, 15),
		// The first handler still ran when the second started.
		run("past", "i1", 100, 300, 150), run("past", "i0", 0, 200, 50),
		// The first handler had returned, its effect landed later.
		run("late", "i0", 0, 10, 500), run("late", "i1", 100, 120, 110),
		// The end was not recorded: the landing counts.
		run("noend", "i0", 0, -1, 50), run("noend", "i1", 40, 60, 45),
		// Other keys never overlap each other.
		run("a", "i0", 0, 100, 50), run("b", "i0", 10, 20, 15),
	}
	got := findOverlaps(runs)
	require.Len(t, got, 3)
	byKey := map[string]overlap{}
	for _, o := range got {
		byKey[o.a.key] = o
	}
	assert.True(t, byKey["past"].pastLease(), "the first handler returned after the second started")
	assert.Equal(t, "i0", byKey["past"].a.instance, "the earlier start comes first")
	assert.False(t, byKey["late"].pastLease(), "the first handler had returned; only its effect was late")
	assert.False(t, byKey["noend"].pastLease())
	assert.Contains(t, byKey["late"].String(), "key late: runs overlap: i0's run started 12:00:00.000000, its handler returned 12:00:00.010000, its effect landed 12:00:00.500000")
}

// A call counts as late past its timeout plus CallSlack, not before.
func TestLateCalls(t *testing.T) {
	t.Parallel()
	l := &lateCalls{}
	l.add(time.Second, time.Second)
	l.add(time.Second+CallSlack, time.Second)
	l.add(time.Second+CallSlack+time.Millisecond, time.Second)
	l.add(3*time.Second, time.Second)
	n, worst := l.count()
	assert.Equal(t, 2, n)
	assert.Equal(t, 3*time.Second, worst)
	var none *lateCalls
	none.add(time.Hour, time.Second) // a nil counter counts nothing
}

// checkInvariants finds overlapping runs in soak_effects, and recordEnds
// writes the handlers' ends the instances recorded.
func TestInvariantsCatchOverlaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	_, err := db.ExecContext(ctx, effectsDDL+`;
		INSERT INTO soak_effects ("key", "instance", "nonce", "started", "landed") VALUES
			('o', 'i0', 'n1', '2026-01-01 12:00:00Z', '2026-01-01 12:00:09Z'),
			('o', 'i1', 'n2', '2026-01-01 12:00:05Z', '2026-01-01 12:00:05.1Z'),
			('s', 'i0', 'n3', '2026-01-01 12:00:00Z', '2026-01-01 12:00:00.1Z'),
			('s', 'i1', 'n4', '2026-01-01 12:00:06Z', '2026-01-01 12:00:06.1Z')`)
	require.NoError(t, err)
	in := &instance{ends: map[string]time.Time{
		"n1": time.Date(2026, 1, 1, 12, 0, 1, 0, time.UTC), "n2": time.Date(2026, 1, 1, 12, 0, 5, 200e6, time.UTC),
		"n3": time.Date(2026, 1, 1, 12, 0, 0, 200e6, time.UTC), "n4": time.Date(2026, 1, 1, 12, 0, 6, 200e6, time.UTC),
	}}
	e := &env{url: url}
	require.NoError(t, recordEnds(ctx, e, []*instance{in}))
	created := func(key, nonce string) response {
		return response{status: 201, contentType: "application/json", location: "/orders/" + nonce, body: `{"key":"` + key + `","nonce":"` + nonce + `"}`}
	}
	keys := map[string]*keyState{
		"o": {answered: true, originals: 1, responses: []response{created("o", "n2")}},
		"s": {answered: true, originals: 2, responses: []response{created("s", "n3"), created("s", "n4")}},
	}
	f, err := checkInvariants(ctx, e, keys, nil)
	require.NoError(t, err)
	require.Len(t, f.overlaps, 1)
	o := f.overlaps[0]
	assert.Equal(t, "n1", o.a.nonce)
	assert.False(t, o.pastLease(), "i0's handler returned at :01, before i1 started at :05; its effect landed at :09")
	assert.Contains(t, f.once["o"], "the handler ran 2 times: i0 started 12:00:00.000000, returned 12:00:01.000000, landed 12:00:09.000000, answered to no client")
	assert.True(t, f.firstAnswered["s"], "the first run of s was answered as the original")
	assert.False(t, f.firstAnswered["o"])
	assert.True(t, strings.HasPrefix(f.once["s"], "key s: the handler ran 2 times"))
}
