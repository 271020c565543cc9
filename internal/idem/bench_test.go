package idem

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klozd/api/ent/schema"
	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgcluster"
	"github.com/klozd/api/internal/pgtest"
)

var benchSeq atomic.Int64

// BenchmarkMiddleware compares the middleware's two paths with the bare
// handler and with the minimal hand-written SQL for the same work: one
// insert-claim and one update-complete for a new key, one select for a
// replay, each as ad hoc statements and as prepared ones (the Store
// prepares its statements).
func BenchmarkMiddleware(b *testing.B) {
	db := bounded(b, pgtest.URL(b), 4)
	s := NewStore(db, StoreConfig{})
	const body = `{"sku":"a","qty":1}`
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"ord_1","status":"created"}`)
	})
	mw := serve(Config{Store: s}, handler)
	mux := http.NewServeMux()
	mux.Handle(route, handler)
	request := func(key string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		return r
	}
	ctx := context.Background()

	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, request("k"))
		}
	})
	b.Run("new-key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			mw.ServeHTTP(w, request(fmt.Sprint("new-", benchSeq.Add(1))))
			if w.Code != http.StatusCreated {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.Run("baseline-new-key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			now := schema.UTCMillis(time.Now())
			id := schema.NewID()
			if _, err := db.ExecContext(ctx, `INSERT INTO idempotency_records ("id", "key", "route", "requestHash", "responseStatus", "responseBodyJson", "createdAt", "expiresAt")
				VALUES ($1, $2, $3, $4, 0, '', $5, $6)`, id, fmt.Sprint("base-", benchSeq.Add(1)), route, "hash", now, now.Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, request("k"))
			if _, err := db.ExecContext(ctx, `UPDATE idempotency_records SET "responseStatus" = $2, "responseBodyJson" = $3, "expiresAt" = $4 WHERE "id" = $1`,
				id, w.Code, w.Body.String(), now.Add(24*time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("baseline-prepared-new-key", func(b *testing.B) {
		b.ReportAllocs()
		ins, err := db.PrepareContext(ctx, `INSERT INTO idempotency_records ("id", "key", "route", "requestHash", "responseStatus", "responseBodyJson", "createdAt", "expiresAt")
			VALUES ($1, $2, $3, $4, 0, '', $5, $6)`)
		if err != nil {
			b.Fatal(err)
		}
		defer ins.Close()
		upd, err := db.PrepareContext(ctx, `UPDATE idempotency_records SET "responseStatus" = $2, "responseBodyJson" = $3, "expiresAt" = $4 WHERE "id" = $1`)
		if err != nil {
			b.Fatal(err)
		}
		defer upd.Close()
		for b.Loop() {
			now := schema.UTCMillis(time.Now())
			id := schema.NewID()
			if _, err := ins.ExecContext(ctx, id, fmt.Sprint("prep-", benchSeq.Add(1)), route, "hash", now, now.Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, request("k"))
			if _, err := upd.ExecContext(ctx, id, w.Code, w.Body.String(), now.Add(24*time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
	})

	mw.ServeHTTP(httptest.NewRecorder(), request("replayed"))
	b.Run("replay", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			mw.ServeHTTP(w, request("replayed"))
			if w.Header().Get("Idempotent-Replayed") != "true" {
				b.Fatalf("not replayed: %d %s", w.Code, w.Body)
			}
		}
	})
	b.Run("baseline-replay", func(b *testing.B) {
		b.ReportAllocs()
		key := storedKey("", "replayed")
		for b.Loop() {
			r := request("replayed")
			_, _ = io.ReadAll(r.Body)
			var status int
			var stored string
			if err := db.QueryRowContext(ctx, `SELECT "responseStatus", "responseBodyJson" FROM idempotency_records WHERE "key" = $1 AND "route" = $2`,
				key, route).Scan(&status, &stored); err != nil {
				b.Fatal(err)
			}
			w := httptest.NewRecorder()
			w.WriteHeader(status)
			_, _ = io.WriteString(w, stored)
		}
	})
	b.Run("baseline-prepared-replay", func(b *testing.B) {
		b.ReportAllocs()
		sel, err := db.PrepareContext(ctx, `SELECT "responseStatus", "responseBodyJson" FROM idempotency_records WHERE "key" = $1 AND "route" = $2`)
		if err != nil {
			b.Fatal(err)
		}
		defer sel.Close()
		key := storedKey("", "replayed")
		for b.Loop() {
			r := request("replayed")
			_, _ = io.ReadAll(r.Body)
			var status int
			var stored string
			if err := sel.QueryRowContext(ctx, key, route).Scan(&status, &stored); err != nil {
				b.Fatal(err)
			}
			w := httptest.NewRecorder()
			w.WriteHeader(status)
			_, _ = io.WriteString(w, stored)
		}
	})
}

// BenchmarkPoolerModes compares the middleware on one database in today's
// prepared mode, in pooler-safe mode (pgbouncer=true) on a direct
// connection, in pooler-safe mode through PgBouncer in transaction pooling,
// and in prepared mode through PgBouncer in session pooling, on the tests'
// driver (TEST_DB_DRIVER; make bench runs both).
func BenchmarkPoolerModes(b *testing.B) {
	url := pgtest.URL(b)
	modes := []struct{ name, url string }{
		{"prepared", url},
		{"pooler-safe", url + "&pgbouncer=true"},
		{"pooler-safe-via-pgbouncer", pgtest.StartBouncer(b, pgcluster.PoolTransaction, 4, nil).URL(b, url, "pgbouncer", "true")},
		{"prepared-via-pgbouncer-session", pgtest.StartBouncer(b, pgcluster.PoolSession, 4, nil).URL(b, url)},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"ord_1","status":"created"}`)
	})
	request := func(key string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"sku":"a","qty":1}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		return r
	}
	for _, m := range modes {
		db, err := database.OpenConfig(m.url, database.Config{Driver: pgtest.Driver(), MaxOpenConns: 4, MaxIdleConns: 4})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = db.Close() })
		mw := serve(Config{Store: NewStore(db, StoreConfig{})}, handler)
		b.Run("new-key/"+m.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				mw.ServeHTTP(w, request(fmt.Sprint("new-", benchSeq.Add(1))))
				if w.Code != http.StatusCreated {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
		key := fmt.Sprint("replay-", benchSeq.Add(1))
		mw.ServeHTTP(httptest.NewRecorder(), request(key))
		b.Run("replay/"+m.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				mw.ServeHTTP(w, request(key))
				if w.Code != http.StatusCreated {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
