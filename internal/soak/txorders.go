package soak

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/klozd/api/internal/database"
)

// txFindings are checkTxOrders' results: the violations of the
// transactional endpoint's invariant and its counts.
type txFindings struct {
	v []string
	// keys is the number of keys sent to the endpoint; orders the rows of
	// soak_tx_orders for them; stored their stored records; found the
	// 2xx answers whose order is in the table with the stored nonce.
	keys, orders, stored, found int
	// lost is, with an asynchronous failover, the keys whose acknowledged
	// record and order vanished together (the key ran again when re-sent,
	// or not at all): the cost of asynchronous replication, not a
	// violation.
	lost int
}

// note is the summary's line of the transactional endpoint.
func (t txFindings) note() string {
	s := fmt.Sprintf("transactional endpoint: %d keys, %d orders, %d stored records, %d 2xx answers found their order", t.keys, t.orders, t.stored, t.found)
	if t.lost > 0 {
		s += fmt.Sprintf(", %d acknowledged keys whose record and order the failover lost together", t.lost)
	}
	return s
}

// checkTxOrders checks the transactional endpoint's invariant on the keys
// sent to it (keyState.tx): for every key, exactly one order row if and
// only if a stored record (responseStatus > 0), the row's nonce that of
// the record; and every client that got a 2xx finds its order (its nonce
// in the table, equal to the stored one), every replay equal to the
// original. With lostOK (an asynchronous failover) an acknowledged order
// may be missing, or replaced by the run of a later re-send, provided its
// record went with it: a key with a record and no order, or an order and
// no record, is a violation even then.
func checkTxOrders(ctx context.Context, e *env, keys map[string]*keyState, lostOK bool) (t txFindings, err error) {
	db, err := database.Open(e.url)
	if err != nil {
		return t, err
	}
	defer db.Close()
	return checkTxOrdersDB(ctx, db, keys, lostOK)
}

func checkTxOrdersDB(ctx context.Context, db *sql.DB, keys map[string]*keyState, lostOK bool) (t txFindings, err error) {
	violate := func(format string, args ...any) {
		if len(t.v) < 50 {
			t.v = append(t.v, fmt.Sprintf(format, args...))
		}
	}
	// The stored key is a hash of the tenant and the key: the records are
	// matched by the order their response holds.
	stored := map[string][]string{} // key → nonces of its stored responses
	if err := eachRow(ctx, db, `SELECT "responseBodyJson" FROM idempotency_records WHERE "responseStatus" > 0`, func(r *sql.Rows) error {
		var raw string
		if err := r.Scan(&raw); err != nil {
			return err
		}
		var env struct {
			Body string `json:"body"`
		}
		var o order
		if json.Unmarshal([]byte(raw), &env) == nil && json.Unmarshal([]byte(env.Body), &o) == nil && o.Key != "" {
			stored[o.Key] = append(stored[o.Key], o.Nonce)
		}
		return nil
	}); err != nil {
		return t, fmt.Errorf("read the stored records: %w", err)
	}
	orders := map[string][]string{} // key → nonces of its orders
	if err := eachRow(ctx, db, `SELECT "key", "nonce" FROM soak_tx_orders`, func(r *sql.Rows) error {
		var k, n string
		if err := r.Scan(&k, &n); err != nil {
			return err
		}
		orders[k] = append(orders[k], n)
		return nil
	}); err != nil {
		return t, fmt.Errorf("read soak_tx_orders: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		st := keys[k]
		if !st.tx {
			continue
		}
		t.keys++
		rows, recs := orders[k], stored[k]
		t.orders += len(rows)
		t.stored += len(recs)
		switch {
		case len(rows) > 1:
			violate("key %s (transactional): %d orders, want at most one", k, len(rows))
			continue
		case len(rows) == 1 && len(recs) == 0:
			violate("key %s (transactional): an order (%s) without a stored record", k, rows[0])
			continue
		case len(rows) == 0 && len(recs) > 0:
			violate("key %s (transactional): a stored record (%s) without its order", k, recs[0])
			continue
		case len(rows) == 1 && rows[0] != recs[0]:
			violate("key %s (transactional): the order's nonce %s is not the stored record's %s", k, rows[0], recs[0])
			continue
		}
		if !st.answered {
			violate("key %s (transactional): no success after the fault, even when retried", k)
			continue
		}
		var have string // the committed order's nonce, "" when none
		if len(rows) == 1 {
			have = rows[0]
		}
		lost := false
		var ref *response
		for i := range st.responses {
			r := &st.responses[i]
			if ref == nil && !r.replayed {
				ref = r
			}
			if r.status < 200 || r.status >= 300 {
				continue
			}
			var o order
			if json.Unmarshal([]byte(r.body), &o) != nil || o.Nonce == "" {
				violate("key %s (transactional): a 2xx without an order: %.120s", k, r.body)
				continue
			}
			switch {
			case o.Nonce == have:
				t.found++
			case lostOK:
				lost = true
			case have == "":
				violate("key %s (transactional): a client got a 2xx (%s) but no order committed", k, o.Nonce)
			default:
				violate("key %s (transactional): a client got a 2xx (%s) but the committed order is %s", k, o.Nonce, have)
			}
		}
		if lost {
			t.lost++
			continue // what the failover lost explains the replays' differences
		}
		if st.originals > 1 {
			violate("key %s (transactional): %d clients got the original (non-replayed) response", k, st.originals)
		}
		if ref == nil {
			ref = &st.responses[0]
		}
		for _, r := range st.responses {
			if d := r.differs(*ref); d != "" {
				violate("key %s (transactional): a response differs from the original in its %s", k, d)
			}
		}
	}
	return t, nil
}
