package idem_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klozd/api/internal/idem"
	"github.com/klozd/api/internal/pgtest"
)

// ExampleMiddleware wires the middleware into a ServeMux route, where
// r.Pattern ("POST /orders") scopes the key. The second request, a retry
// with the same key, is answered from the store.
func ExampleMiddleware() {
	db, done := exampleDB()
	defer done()

	idempotent := idem.Middleware(idem.Config{
		Store:  idem.NewStore(db, idem.StoreConfig{}),
		Tenant: func(r *http.Request) string { return r.Header.Get("X-Org") },
	})
	var orders atomic.Int64
	mux := http.NewServeMux()
	mux.Handle("POST /orders", idempotent(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := orders.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", fmt.Sprintf("/orders/%d", id))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d}`, id)
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader(`{"sku":"a"}`))
		req.Header.Set("Idempotency-Key", "8e03978e-40d5-43e8-bc93-6894a57f9324")
		req.Header.Set("X-Org", "org_1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Idempotent-Replayed"), string(body))
	}
	// Output:
	// 201 /orders/1  {"id":1}
	// 201 /orders/1 true {"id":1}
}

// ExampleStore uses the store without HTTP: claim a key, do the work once,
// store its result; a retry gets the stored result.
func ExampleStore() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()
	store := idem.NewStore(db, idem.StoreConfig{})
	req := idem.Request{Key: "charge-42", Route: "charge", Tenant: "org_1",
		Fingerprint: idem.Fingerprint("POST", "charge", "", "org_1", "application/json", []byte(`{"amount":100}`))}

	for range 2 {
		res, err := store.Begin(ctx, req)
		if err != nil {
			panic(err) // idem.ErrInFlight, idem.ErrMismatch or a store failure
		}
		if res.Replay != nil {
			fmt.Println("replay:", res.Replay.Status, string(res.Replay.Body))
			continue
		}
		result := []byte(`{"charged":100}`) // the work, done once
		if err := store.Complete(ctx, res.Claim, idem.Response{Status: 200, Body: result}); err != nil {
			panic(err)
		}
		fmt.Println("ran:", string(result))
	}
	// Output:
	// ran: {"charged":100}
	// replay: 200 {"charged":100}
}

// exampleDB returns a pool on a fresh migrated database and a function
// that drops it. Examples have no *testing.T, so exampleTB stands in.
func exampleDB() (*sql.DB, func()) {
	t := &exampleTB{}
	db := pgtest.DB(t)
	return db, t.cleanup
}

// exampleTB implements the part of testing.TB that pgtest uses.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (*exampleTB) Helper()                      {}
func (*exampleTB) Log(...any)                   {}
func (*exampleTB) Logf(string, ...any)          {}
func (*exampleTB) Failed() bool                 { return false }
func (*exampleTB) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (t *exampleTB) Cleanup(f func())           { t.cleanups = append(t.cleanups, f) }

func (t *exampleTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
