package soak

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

// The transactional endpoint's invariant catches an order without its
// record, a record without its order, a nonce that differs, two orders,
// and a 2xx whose order is not the committed one; with an asynchronous
// failover an acknowledged order may vanish with its record, but never
// one without the other.
func TestTxOrdersInvariant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.URL(t))
	var records []string
	record := func(key, nonce string) {
		records = append(records, fmt.Sprintf(`('r%d', '%s', 'POST /tx-orders', 'h', 201, '{"v":1,"body":"{\"key\":\"%s\",\"nonce\":\"%s\"}\n"}', now() + interval '1 hour')`,
			len(records), key, key, nonce))
	}
	record("good", "n1")
	record("orphan-record", "n3")
	record("mismatch", "n5")
	record("twice", "n6")
	record("unseen", "n8")
	record("plain", "p1") // a key of the non-transactional endpoint
	_, err := db.ExecContext(ctx, txOrdersDDL+`;
		INSERT INTO soak_tx_orders ("key", "nonce", "instance") VALUES
			('good', 'n1', 'i0'), ('orphan-order', 'n2', 'i0'), ('mismatch', 'n4', 'i0'),
			('twice', 'n6', 'i0'), ('twice', 'n7', 'i1'), ('unseen', 'n8', 'i1');
		INSERT INTO idempotency_records (id, key, route, "requestHash", "responseStatus", "responseBodyJson", "expiresAt") VALUES `+
		strings.Join(records, ", "))
	require.NoError(t, err)
	created := func(key, nonce string, replayed bool) response {
		return response{replayed: replayed, status: 201, contentType: "application/json", location: "/tx-orders/" + nonce,
			body: `{"key":"` + key + `","nonce":"` + nonce + `"}` + "\n"}
	}
	answered := func(rs ...response) *keyState {
		st := &keyState{tx: true, answered: true, responses: rs}
		for _, r := range rs {
			if !r.replayed {
				st.originals++
			}
		}
		return st
	}
	keys := func() map[string]*keyState {
		return map[string]*keyState{
			"good":          answered(created("good", "n1", false), created("good", "n1", true)),
			"orphan-order":  answered(created("orphan-order", "n2", false)),
			"orphan-record": answered(created("orphan-record", "n3", false)),
			"mismatch":      answered(created("mismatch", "n4", false)),
			"twice":         answered(created("twice", "n6", false)),
			"unseen":        answered(created("unseen", "n9", false), created("unseen", "n8", false)),
			"vanished":      answered(created("vanished", "n10", false)),
			"unanswered":    {tx: true},
			"plain":         {answered: true, originals: 1, responses: []response{created("plain", "p1", false)}},
		}
	}
	f, err := checkTxOrdersDB(ctx, db, keys(), false)
	require.NoError(t, err)
	all := strings.Join(f.v, "\n")
	for _, want := range []string{
		"key orphan-order (transactional): an order (n2) without a stored record",
		"key orphan-record (transactional): a stored record (n3) without its order",
		"key mismatch (transactional): the order's nonce n4 is not the stored record's n5",
		"key twice (transactional): 2 orders, want at most one",
		"key unseen (transactional): a client got a 2xx (n9) but the committed order is n8",
		"key unseen (transactional): 2 clients got the original",
		`key unseen (transactional): a response differs from the original in its Location ("/tx-orders/n8", not "/tx-orders/n9")`,
		"key vanished (transactional): a client got a 2xx (n10) but no order committed",
		"key unanswered (transactional): no success after the fault",
	} {
		assert.Contains(t, all, want)
	}
	assert.NotContains(t, all, "key good")
	assert.NotContains(t, all, "plain")
	assert.Len(t, f.v, 9, all)
	assert.Equal(t, 8, f.keys)
	assert.Equal(t, 6, f.orders)
	assert.Equal(t, 5, f.stored)
	assert.Equal(t, 3, f.found) // good's original and replay, unseen's n8
	assert.Zero(t, f.lost)

	// An asynchronous failover may lose an acknowledged order with its
	// record (vanished), or have it replaced by the run of a re-send
	// (unseen); a key with one and not the other is still a violation.
	f, err = checkTxOrdersDB(ctx, db, keys(), true)
	require.NoError(t, err)
	all = strings.Join(f.v, "\n")
	assert.NotContains(t, all, "key vanished")
	assert.NotContains(t, all, "key unseen")
	for _, want := range []string{"key orphan-order", "key orphan-record", "key mismatch", "key twice", "key unanswered"} {
		assert.Contains(t, all, want)
	}
	assert.Equal(t, 2, f.lost)
}

// A non-transactional key whose every run but one answered 5xx is the
// documented limit of that mode; a second run that answered 2xx, or whose
// answer is unknown, is not.
func TestFailedLanded(t *testing.T) {
	t.Parallel()
	runs := func(statuses ...int) []effectRun {
		var rs []effectRun
		for _, s := range statuses {
			rs = append(rs, effectRun{key: "k", status: s})
		}
		return rs
	}
	assert.True(t, failedLanded(runs(503, 201)))
	assert.True(t, failedLanded(runs(503, 503, 201)))
	assert.True(t, failedLanded(runs(201, 503))) // the failed run started last
	assert.False(t, failedLanded(runs(201)), "one run")
	assert.False(t, failedLanded(runs(201, 201)), "both answered 201: the middleware ran the key twice")
	assert.False(t, failedLanded(runs(503, 0)), "an answer not recorded is not explained")
}
