package idem

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgtest"
	"github.com/klozd/api/internal/problem"
)

const route = "POST /orders"

// created answers 201 with a Location and a JSON body echoing the request,
// counting its calls.
func created(calls *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/vnd.klozd+json; charset=utf-8")
		w.Header().Set("Location", fmt.Sprintf("/orders/%d", n))
		w.Header().Set("X-Request-Local", "not replayed")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "{\"order\": %d, \"echo\": %q}\n", n, body)
	})
}

// serve routes POST /orders through the middleware to h on a ServeMux, so
// r.Pattern is set.
func serve(cfg Config, h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(route, Middleware(cfg)(h))
	mux.Handle("GET /orders", h)
	return mux
}

func post(h http.Handler, key, body string, header ...string) *httptest.ResponseRecorder {
	return postCtx(context.Background(), h, key, body, header...)
}

func postCtx(ctx context.Context, h http.Handler, key, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/orders", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func assertProblem(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	assert.Equal(t, status, w.Code)
	assert.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	var p problem.Details
	if assert.NoError(t, json.Unmarshal(w.Body.Bytes(), &p), "body %q", w.Body.String()) {
		assert.Equal(t, status, p.Status)
		assert.Equal(t, problem.Title(status), p.Title)
		assert.True(t, strings.HasPrefix(p.Type, ProblemBase), "type %q", p.Type)
		assert.NotEmpty(t, p.Detail)
	}
}

// 100 identical requests, started together, split over two instances with
// their own pools: the handler runs once, the others get 409 while it
// runs, and the replay afterwards.
func TestMiddlewareExactlyOnceAcrossInstances(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	var calls atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release // hold the claim until every duplicate has been answered
		}
		created(new(atomic.Int64)).ServeHTTP(w, r)
	})
	var servers []*httptest.Server
	for range 2 {
		s := NewStore(bounded(t, url, 10), StoreConfig{})
		srv := httptest.NewServer(serve(Config{Store: s}, h))
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	t.Cleanup(client.CloseIdleConnections)

	type answer struct {
		status   int
		replayed string
		body     string
	}
	const n = 100
	start := make(chan struct{})
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			req, err := http.NewRequest(http.MethodPost, servers[i%2].URL+"/orders", strings.NewReader(`{"sku":"a","qty":1}`))
			if !assert.NoError(t, err) {
				answers <- answer{}
				return
			}
			req.Header.Set("Idempotency-Key", "order-123")
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if !assert.NoError(t, err) {
				answers <- answer{}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			answers <- answer{resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), string(b)}
		})
	}
	close(start)
	statuses := map[int]int{}
	timeout := time.After(60 * time.Second) // a bound against a hang, not a wait for a race
	for i := range n {
		if i == n-1 {
			close(release) // all duplicates answered: let the first finish
		}
		select {
		case a := <-answers:
			statuses[a.status]++
			assert.Empty(t, a.replayed)
		case <-timeout:
			close(release)
			t.Fatalf("only %d of %d answers: %v", i, n, statuses)
		}
	}
	wg.Wait()
	<-entered
	assert.Equal(t, int64(1), calls.Load(), "the handler ran exactly once")
	assert.Equal(t, map[int]int{http.StatusCreated: 1, http.StatusConflict: n - 1}, statuses)

	// Once done, both instances replay it.
	for _, srv := range servers {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader(`{"qty":1, "sku":"a"}`))
		req.Header.Set("Idempotency-Key", `"order-123"`)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusCreated, resp.StatusCode)
		assert.Equal(t, "true", resp.Header.Get("Idempotent-Replayed"))
	}
	assert.Equal(t, int64(1), calls.Load())
}

func TestMiddlewareReplayIsByteIdentical(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	h := serve(Config{Store: NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})}, created(&calls))

	first := post(h, "k-1", `{"sku":"a"}`)
	require.Equal(t, http.StatusCreated, first.Code)
	assert.Empty(t, first.Header().Get("Idempotent-Replayed"))

	for _, key := range []string{"k-1", `"k-1"`} {
		again := post(h, key, `{"sku":"a"}`)
		assert.Equal(t, http.StatusCreated, again.Code)
		assert.Equal(t, first.Body.Bytes(), again.Body.Bytes())
		assert.Equal(t, "application/vnd.klozd+json; charset=utf-8", again.Header().Get("Content-Type"))
		assert.Equal(t, "/orders/1", again.Header().Get("Location"))
		assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
		assert.Empty(t, again.Header().Get("X-Request-Local"), "only the configured headers are replayed")
	}
	assert.Equal(t, int64(1), calls.Load())
}

func TestMiddlewareReplaysStatusAndDefaultContentType(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var calls atomic.Int64
	h := serve(Config{Store: s}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch r.Header.Get("X-Case") {
		case "204":
			w.WriteHeader(http.StatusNoContent)
		case "no-type":
			_, _ = w.Write([]byte(`{"ok":true}`))
		case "409":
			http.Error(w, "already shipped", http.StatusConflict)
		}
	}))
	for _, tc := range []struct {
		name, contentType string
		status            int
	}{
		{"204", "", http.StatusNoContent},
		{"no-type", "application/json", http.StatusOK},
		{"409", "text/plain; charset=utf-8", http.StatusConflict},
	} {
		first := post(h, "key-"+tc.name, "{}", "X-Case", tc.name)
		again := post(h, "key-"+tc.name, "{}", "X-Case", tc.name)
		assert.Equal(t, tc.status, first.Code, tc.name)
		assert.Equal(t, tc.status, again.Code, tc.name)
		assert.Equal(t, tc.contentType, first.Header().Get("Content-Type"), tc.name)
		assert.Equal(t, tc.contentType, again.Header().Get("Content-Type"), tc.name)
		assert.Equal(t, first.Body.String(), again.Body.String(), tc.name)
		assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"), tc.name)
	}
	assert.Equal(t, int64(3), calls.Load(), "4xx responses are stored and replayed too")
}

func TestMiddlewareMismatch(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	h := serve(Config{Store: NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})}, created(&calls))

	require.Equal(t, http.StatusCreated, post(h, "k", `{"sku":"a","qty":1}`).Code)
	assertProblem(t, post(h, "k", `{"sku":"a","qty":2}`), http.StatusUnprocessableEntity)
	same := post(h, "k", "{ \"qty\": 1,\n \"sku\": \"a\" }")
	assert.Equal(t, http.StatusCreated, same.Code, "a canonically equal payload replays")
	assert.Equal(t, "true", same.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, int64(1), calls.Load())
}

// Path values and the query string are part of the request: the same key
// and body sent to another resource of the same route pattern, or with
// another query, is a different request (422), never a replay of the first
// resource's response.
func TestMiddlewarePathAndQueryArePartOfTheRequest(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var charged []string
	mux := http.NewServeMux()
	mux.Handle("POST /accounts/{id}/charge", Middleware(Config{Store: s})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		charged = append(charged, r.PathValue("id")+"?"+r.URL.RawQuery)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"charged":%q}`, r.PathValue("id"))
	})))
	do := func(key, target string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{"amount":100}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	require.Equal(t, http.StatusCreated, do("path", "/accounts/1/charge").Code)
	assertProblem(t, do("path", "/accounts/2/charge"), http.StatusUnprocessableEntity)
	assertProblem(t, do("path", "/accounts/%31/charge"), http.StatusUnprocessableEntity) // the escaped path is compared
	assert.Equal(t, "true", do("path", "/accounts/1/charge").Header().Get("Idempotent-Replayed"))

	require.Equal(t, http.StatusCreated, do("query", "/accounts/1/charge?amount=5").Code)
	assertProblem(t, do("query", "/accounts/1/charge?amount=500"), http.StatusUnprocessableEntity)
	assertProblem(t, do("query", "/accounts/1/charge"), http.StatusUnprocessableEntity)
	assert.Equal(t, "true", do("query", "/accounts/1/charge?amount=5").Header().Get("Idempotent-Replayed"))

	assert.Equal(t, []string{"1?", "1?amount=5"}, charged, "no request ran for another resource's key")
}

// The same key on the same route from two tenants names two records:
// neither tenant sees, blocks or is refused because of the other's.
func TestMiddlewareTenantIsolation(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	h := serve(Config{Store: s, Tenant: func(r *http.Request) string { return r.Header.Get("X-Org") }}, created(&calls))

	a := post(h, "shared", `{"who":"a"}`, "X-Org", "org_a")
	b := post(h, "shared", `{"who":"a"}`, "X-Org", "org_b")
	require.Equal(t, http.StatusCreated, a.Code)
	require.Equal(t, http.StatusCreated, b.Code)
	assert.Empty(t, b.Header().Get("Idempotent-Replayed"), "org_b's request ran; it did not replay org_a's")
	assert.NotEqual(t, a.Body.String(), b.Body.String())
	assert.Equal(t, int64(2), calls.Load())

	c := post(h, "shared", `{"who":"c"}`, "X-Org", "org_c")
	assert.Equal(t, http.StatusCreated, c.Code, "a different payload from another tenant is not a mismatch")

	for org, want := range map[string]*httptest.ResponseRecorder{"org_a": a, "org_b": b} {
		again := post(h, "shared", `{"who":"a"}`, "X-Org", org)
		assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
		assert.Equal(t, want.Body.String(), again.Body.String(), "%s gets its own response", org)
	}
	assert.Equal(t, int64(3), calls.Load())

	var orgs []string
	rows, err := s.db.Query(`SELECT "organizationId" FROM idempotency_records ORDER BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var o string
		require.NoError(t, rows.Scan(&o))
		orgs = append(orgs, o)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{"org_a", "org_b", "org_c"}, orgs)
}

// Failures store nothing: the next request with the key runs the handler.
func TestMiddlewareFailuresLeaveKeyClaimable(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 4), StoreConfig{})
	big := strings.Repeat("x", 1024)
	tests := []struct {
		name   string
		fail   func(w http.ResponseWriter, r *http.Request, cancel context.CancelFunc)
		panics bool
		reason string
	}{
		{name: "5xx", reason: "status", fail: func(w http.ResponseWriter, _ *http.Request, _ context.CancelFunc) {
			http.Error(w, "database is down", http.StatusInternalServerError)
		}},
		{name: "503", reason: "status", fail: func(w http.ResponseWriter, _ *http.Request, _ context.CancelFunc) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}},
		{name: "panic", reason: "panic", panics: true, fail: func(w http.ResponseWriter, _ *http.Request, _ context.CancelFunc) {
			w.WriteHeader(http.StatusCreated)
			panic("handler bug")
		}},
		{name: "canceled", reason: "canceled", fail: func(w http.ResponseWriter, r *http.Request, cancel context.CancelFunc) {
			cancel() // the client went away while the handler ran, which answers that
			http.Error(w, context.Cause(r.Context()).Error(), http.StatusRequestTimeout)
		}},
		{name: "too large", reason: "too large", fail: func(w http.ResponseWriter, _ *http.Request, _ context.CancelFunc) {
			w.WriteHeader(http.StatusBadRequest) // a refusal: nothing was done
			_, _ = io.WriteString(w, big)
			_, _ = io.WriteString(w, big)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			var failing atomic.Bool
			failing.Store(true)
			var cancel context.CancelFunc
			var released []Event
			h := serve(Config{Store: s, MaxResponseBody: 1500, OnEvent: func(e Event) {
				if e.Kind == EventReleased {
					released = append(released, e)
				}
			}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if failing.Load() {
					tt.fail(w, r, cancel)
					return
				}
				w.WriteHeader(http.StatusCreated)
			}))
			ctx, c := context.WithCancel(context.Background())
			cancel = c
			key := "fail-" + strings.ReplaceAll(tt.name, " ", "-")
			if tt.panics {
				assert.PanicsWithValue(t, "handler bug", func() { postCtx(ctx, h, key, "{}") }, "the panic is re-raised")
			} else {
				w := postCtx(ctx, h, key, "{}")
				if tt.name == "too large" {
					assert.Equal(t, 2*len(big), w.Body.Len(), "the client still gets the whole body")
				}
			}
			cancel()
			if assert.Len(t, released, 1) {
				assert.Equal(t, tt.reason, released[0].Reason)
			}

			failing.Store(false)
			w := post(h, key, "{}")
			assert.Equal(t, http.StatusCreated, w.Code)
			assert.Empty(t, w.Header().Get("Idempotent-Replayed"))
			assert.Equal(t, int64(2), calls.Load(), "the key ran again")
			assert.Equal(t, "true", post(h, key, "{}").Header().Get("Idempotent-Replayed"))
		})
	}
}

// A claim whose instance crashed blocks the key until its lease ends, then
// the key runs again; a record past its TTL is replaced.
func TestMiddlewareCrashedClaimAndExpiry(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Now: clk.Now, Lease: 10 * time.Second, TTL: time.Hour})
	var calls atomic.Int64
	h := serve(Config{Store: s, RetryAfter: 3 * time.Second}, created(&calls))

	// An instance claimed the key and died.
	body := `{"sku":"a"}`
	_, err := s.Begin(context.Background(), Request{Key: "k", Route: route, Fingerprint: Fingerprint(http.MethodPost, route, "/orders", "", "application/json", []byte(body))})
	require.NoError(t, err)

	w := post(h, "k", body)
	assertProblem(t, w, http.StatusConflict)
	assert.Equal(t, "10", w.Header().Get("Retry-After"), "what is left of the lease")
	assert.Zero(t, calls.Load())

	clk.Advance(10 * time.Second)
	w = post(h, "k", body)
	assert.Equal(t, http.StatusCreated, w.Code, "claimable once the lease ended")
	assert.Equal(t, int64(1), calls.Load())

	clk.Advance(time.Hour - time.Millisecond)
	assert.Equal(t, "true", post(h, "k", body).Header().Get("Idempotent-Replayed"))
	clk.Advance(time.Millisecond)
	w = post(h, "k", `{"sku":"b"}`)
	assert.Equal(t, http.StatusCreated, w.Code, "an expired record is replaced, even by another payload")
	assert.Empty(t, w.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, int64(2), calls.Load())
}

func TestMiddlewareStoreDown(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	s := NewStore(deadDB(t), StoreConfig{})
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	w := post(serve(Config{Store: s, Logger: logger}, created(&calls)), "k", "{}")
	assertProblem(t, w, http.StatusServiceUnavailable)
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Zero(t, calls.Load(), "fail closed: the handler did not run")
	assert.Contains(t, logs.String(), "idem: begin key")

	w = post(serve(Config{Store: s, FailOpen: true, Logger: logger}, created(&calls)), "k", "{}")
	assert.Equal(t, http.StatusCreated, w.Code)
	assert.Equal(t, int64(1), calls.Load(), "fail open: the handler ran")
}

// A route or tenant that cannot be stored is the client's doing: 400,
// before the store is asked (it is down here, which would answer 503). A
// path with escapes is stored escaped, so it is usable.
func TestMiddlewareRejectsUnstorableRoute(t *testing.T) {
	t.Parallel()
	down := NewStore(deadDB(t), StoreConfig{})
	var calls atomic.Int64
	h := Middleware(Config{Store: down, Tenant: func(r *http.Request) string { return r.Header.Get("X-Org") },
		Route: func(r *http.Request) string { return r.Header.Get("X-Route") + r.URL.EscapedPath() }})(created(&calls))
	do := func(path string, header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}"))
		r.Header.Set("Idempotency-Key", "k")
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	assertProblem(t, do("/orders/"+strings.Repeat("a", MaxRouteLen)), http.StatusBadRequest)
	assertProblem(t, do("/orders", "X-Route", "caf\xe9"), http.StatusBadRequest)
	assertProblem(t, do("/orders", "X-Route", "a\x00b"), http.StatusBadRequest)
	assertProblem(t, do("/orders", "X-Org", "org\x01"), http.StatusBadRequest)
	assertProblem(t, do("/orders", "X-Org", strings.Repeat("o", MaxRouteLen+1)), http.StatusBadRequest)
	assert.Zero(t, calls.Load())

	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	for _, failOpen := range []bool{false, true} {
		calls.Store(0)
		h := Middleware(Config{Store: s, FailOpen: failOpen})(created(&calls))
		for _, path := range []string{"/orders/%FF", "/orders/%00", "/orders/" + strings.Repeat("b", MaxRouteLen-len("/orders/"))} {
			for range 2 {
				r := httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}"))
				r.Header.Set("Idempotency-Key", fmt.Sprint("path-", failOpen))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				assert.Equal(t, http.StatusCreated, w.Code, "%.20q: %s", path, w.Body)
			}
		}
		assert.Equal(t, int64(3), calls.Load(), "fail open %v: each path ran once, then replayed", failOpen)
	}
}

// FailOpen runs the handler only when the store cannot be reached: a
// stored record that cannot be read still gets 503, and the handler does
// not run.
func TestMiddlewareFailOpenOnlyWhenUnavailable(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var logs syncBuffer
	var calls atomic.Int64
	h := serve(Config{Store: s, FailOpen: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, created(&calls))
	require.Equal(t, http.StatusCreated, post(h, "k", "{}").Code)
	_, err := s.db.Exec(`UPDATE idempotency_records SET "responseBodyJson" = 'not an envelope'`)
	require.NoError(t, err)

	assertProblem(t, post(h, "k", "{}"), http.StatusServiceUnavailable)
	assert.Equal(t, int64(1), calls.Load(), "a corrupt record is not a reason to run the request again")
	assert.Contains(t, logs.String(), "level=ERROR")
	assert.Contains(t, logs.String(), "not a version 1, 2 or 3 envelope")
}

// Requests the middleware does not apply to never reach the store: it is
// down here, and they still succeed.
func TestMiddlewareRequestHandling(t *testing.T) {
	t.Parallel()
	down := NewStore(deadDB(t), StoreConfig{})
	var calls atomic.Int64
	h := serve(Config{Store: down, MaxRequestBody: 16}, created(&calls))

	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.Header.Set("Idempotency-Key", "k")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusCreated, w.Code, "GET passes through")
	assert.Equal(t, http.StatusCreated, post(h, "", "{}").Code, "a request without a key passes through")
	assert.Equal(t, int64(2), calls.Load())

	for _, key := range []string{`"unterminated`, "ключ", strings.Repeat("k", 256)} {
		assertProblem(t, post(h, key, "{}"), http.StatusBadRequest)
	}
	assertProblem(t, post(h, "a", "{}", "Idempotency-Key", "b"), http.StatusBadRequest)
	assertProblem(t, post(h, "k", `{"far too long":"for the limit"}`), http.StatusRequestEntityTooLarge)

	r = httptest.NewRequest(http.MethodPost, "/orders", io.NopCloser(strings.NewReader(`{"unknown":"length, too long"}`)))
	r.ContentLength = -1
	r.Header.Set("Idempotency-Key", "k")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assertProblem(t, w, http.StatusRequestEntityTooLarge)
	assert.Equal(t, int64(2), calls.Load(), "the handler did not run")

	required := serve(Config{Store: down, Header: "X-Idem", Methods: []string{"POST"},
		Required: func(r *http.Request) bool { return r.Pattern == route }}, created(&calls))
	assertProblem(t, post(required, "", "{}"), http.StatusBadRequest)
	assertProblem(t, post(required, "k", "{}"), http.StatusBadRequest) // Idempotency-Key is not X-Idem: still missing
	assert.Equal(t, int64(2), calls.Load())
}

func TestMiddlewareHandlerSeesFullBody(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	body := `{"data":"` + strings.Repeat("é", 4000) + `"}`
	var seen string
	h := serve(Config{Store: s}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		assert.NoError(t, err)
		seen = string(b)
		w.WriteHeader(http.StatusCreated)
	}))
	require.Equal(t, http.StatusCreated, post(h, "k", body).Code)
	assert.Equal(t, body, seen)
}

// With Wait, duplicates of an in-flight request wait and get its response.
func TestMiddlewareWaitThenReplay(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 4), StoreConfig{})
	var calls atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	waiting := make(chan struct{}, 10)
	h := serve(Config{Store: s, Wait: time.Minute, PollInterval: 5 * time.Millisecond, OnEvent: func(e Event) {
		if e.Kind == EventConflict && e.Reason == "waiting" {
			waiting <- struct{}{}
		}
	}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		close(entered)
		<-release
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"job":1}`))
	}))

	var wg sync.WaitGroup
	wg.Go(func() { assert.Equal(t, http.StatusAccepted, post(h, "k", "{}").Code) })
	<-entered
	const dups = 5
	results := make(chan *httptest.ResponseRecorder, dups)
	for range dups {
		wg.Go(func() { results <- post(h, "k", "{}") })
	}
	for range dups {
		<-waiting // every duplicate has found the key in flight
	}
	close(release)
	wg.Wait()
	close(results)
	for w := range results {
		assert.Equal(t, http.StatusAccepted, w.Code)
		assert.Equal(t, `{"job":1}`, w.Body.String())
		assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"))
	}
	assert.Equal(t, int64(1), calls.Load())
}

// The handler runs with no connection held: with a pool of one, a
// duplicate is still answered while the first request runs.
func TestMiddlewareHoldsNoConnectionWhileHandlerRuns(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 1), StoreConfig{})
	entered, release := make(chan struct{}), make(chan struct{})
	h := serve(Config{Store: s}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusCreated)
	}))
	done := make(chan int)
	go func() { done <- post(h, "k", "{}").Code }()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := postCtx(ctx, h, "k", "{}")
	close(release)
	assertProblem(t, w, http.StatusConflict)
	assert.Equal(t, http.StatusCreated, <-done)
}

// Logs and events carry a hash of the key, never the key or a body; ip is
// stored when configured.
func TestMiddlewareObservability(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var logs bytes.Buffer
	var mu sync.Mutex
	var kinds []EventKind
	const secretKey, secretBody = "sk-secret-key-1234", "card-4242424242424242"
	h := serve(Config{
		Store:  s,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		IP:     RemoteIP,
		OnEvent: func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			kinds = append(kinds, e.Kind)
			assert.Equal(t, storedKey("", secretKey), e.KeyID)
			assert.Equal(t, route, e.Route)
		},
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fail") != "" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, `{"card":"`+secretBody+`"}`)
	}))
	post(h, secretKey, `{"x":"`+secretBody+`"}`, "X-Fail", "1")
	post(h, secretKey, `{"x":"`+secretBody+`"}`)
	post(h, secretKey, `{"x":"`+secretBody+`"}`)
	post(h, secretKey, `{"x":"other"}`)

	assert.Equal(t, []EventKind{EventReleased, EventStored, EventReplay, EventMismatch}, kinds)
	out := logs.String()
	assert.Contains(t, out, `"key_id":"`+storedKey("", secretKey)[:16])
	assert.NotContains(t, out, secretKey)
	assert.NotContains(t, out, secretBody)

	var ip string
	require.NoError(t, s.db.QueryRow(`SELECT "ip" FROM idempotency_records`).Scan(&ip))
	assert.Equal(t, "192.0.2.1", ip, "httptest's RemoteAddr")
}

func TestMiddlewareStatementCount(t *testing.T) {
	t.Parallel()
	db, count := pgtest.Counting(t, pgtest.URL(t))
	s := NewStore(db, StoreConfig{})
	var calls atomic.Int64
	h := serve(Config{Store: s}, created(&calls))
	// Warm up: open the connection and prepare the statements on it.
	require.Equal(t, http.StatusCreated, post(h, "warm-up", "{}").Code)
	require.Equal(t, "true", post(h, "warm-up", "{}").Header().Get("Idempotent-Replayed"))

	before, prepares := count.Statements.Load(), count.Prepares.Load()
	require.Equal(t, http.StatusCreated, post(h, "new", "{}").Code)
	assert.Equal(t, int64(2), count.Statements.Load()-before, "new key: claim + complete")

	before = count.Statements.Load()
	w := post(h, "new", "{}")
	require.Equal(t, "true", w.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, int64(1), count.Statements.Load()-before, "replay: one query")
	assert.Equal(t, prepares, count.Prepares.Load(), "statements are prepared once per connection")
}

// The store's connection dies between the handler and Complete: the
// response is still stored and a repeat is a replay, not a second run.
// (lib/pq reports the dead idle connection as driver.ErrBadConn, which
// database/sql retries itself on a new connection;
// TestMiddlewareRetriesCompleteAfterTransientError covers the middleware's
// own retry.)
func TestMiddlewareRetriesCompleteAfterLostConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	// The per-test URL's role is not a superuser; terminate as one, on the
	// same database.
	a, err := url.Parse(pgtest.Start(t).AdminURL)
	require.NoError(t, err)
	a.Path = u.Path
	admin := pgtest.Open(t, a.String())

	s := NewStore(bounded(t, dbURL, 1), StoreConfig{})
	var logs syncBuffer
	var calls atomic.Int64
	var kinds []EventKind
	h := serve(Config{
		Store:   s,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		OnEvent: func(e Event) { kinds = append(kinds, e.Kind) },
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		// The timeout argument makes pg_terminate_backend wait until the
		// backend has exited, so Complete finds its connection dead.
		var n int
		require.NoError(t, admin.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))
			FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n))
		require.Equal(t, 1, n, "the store's one connection")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"order":1}`)
	}))

	first := post(h, "k", "{}")
	require.Equal(t, http.StatusCreated, first.Code)
	assert.Equal(t, []EventKind{EventStored}, kinds, "stored despite the lost connection")
	assert.NotContains(t, logs.String(), "not stored")

	again := post(h, "k", "{}")
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, int64(1), calls.Load(), "the handler ran once")
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Complete fails with a transient error (lock_not_available, the claim's
// row locked past lock_timeout): the middleware retries it, and the retry
// stores the response. The lock is released when the middleware logs its
// first retry, so the test waits on an event, not on time.
func TestMiddlewareRetriesCompleteAfterTransientError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	db, err := database.OpenConfig(dbURL, database.Config{MaxOpenConns: 1, LockTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	locker := pgtest.Open(t, dbURL)
	s := NewStore(db, StoreConfig{})

	var tx *sql.Tx
	var retried atomic.Int64
	unlock := func() {
		if retried.Add(1) == 1 {
			_ = tx.Rollback()
		}
	}
	var calls atomic.Int64
	var kinds []EventKind
	h := serve(Config{
		Store:   s,
		Logger:  slog.New(onMessage{"retrying", unlock}),
		OnEvent: func(e Event) { kinds = append(kinds, e.Kind) },
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var err error
		tx, err = locker.BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = tx.ExecContext(ctx, `SELECT 1 FROM idempotency_records FOR UPDATE`)
		require.NoError(t, err)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"order":1}`)
	}))

	first := post(h, "k", "{}")
	require.Equal(t, http.StatusCreated, first.Code)
	assert.Equal(t, []EventKind{EventStored}, kinds)
	assert.Positive(t, retried.Load(), "Complete failed transiently and was retried")

	again := post(h, "k", "{}")
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, int64(1), calls.Load(), "the handler ran once")
}

// onMessage is a slog.Handler that calls f for each record whose message
// contains substr.
type onMessage struct {
	substr string
	f      func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.f()
	}
	return nil
}
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onMessage) WithGroup(string) slog.Handler      { return h }

// A handler running for several leases keeps its claim: the middleware
// renews the lease while it runs, so a duplicate sent to another instance
// after the first lease ended still gets 409 and the handler runs once.
// The test waits on the renewals themselves (logged at debug level).
func TestMiddlewareRenewsLeaseWhileHandlerRuns(t *testing.T) {
	t.Parallel()
	const lease = 600 * time.Millisecond
	url := pgtest.URL(t)
	a := NewStore(bounded(t, url, 2), StoreConfig{Lease: lease})
	b := NewStore(bounded(t, url, 2), StoreConfig{Lease: lease})
	renewed := make(chan struct{}, 100)
	var calls atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	var handlerErr error
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		close(entered)
		<-release
		handlerErr = r.Context().Err()
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"order":1}`)
	})
	first := serve(Config{Store: a, Logger: slog.New(onMessage{"lease renewed", func() { renewed <- struct{}{} }})}, h)
	second := serve(Config{Store: b}, h)

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- post(first, "k", "{}") }()
	<-entered
	var claim string
	require.NoError(t, a.db.QueryRow(`SELECT "id" FROM idempotency_records`).Scan(&claim))
	timeout := time.After(30 * time.Second) // a bound against a hang, not a wait for a race
	for i := range 9 {                      // three leases
		select {
		case <-renewed:
		case <-timeout:
			close(release)
			t.Fatalf("only %d renewals", i)
		}
	}
	assertProblem(t, post(second, "k", "{}"), http.StatusConflict)
	var id string
	var running bool
	require.NoError(t, a.db.QueryRow(`SELECT "id", "expiresAt" > `+dbNow+` FROM idempotency_records`).Scan(&id, &running))
	assert.Equal(t, claim, id, "the first claim still holds the key")
	assert.True(t, running, "its lease runs")

	close(release)
	assert.Equal(t, http.StatusCreated, (<-done).Code)
	assert.NoError(t, handlerErr, "the handler's context was not cancelled")
	again := post(second, "k", "{}")
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, int64(1), calls.Load(), "the handler ran once")
}

// When a renewal finds the claim replaced (its lease ran out and another
// instance re-claimed the key), the handler's context is cancelled with
// ErrLeaseLost, and nothing is stored over the new claim.
func TestMiddlewareLostClaimCancelsHandler(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Lease: 300 * time.Millisecond})
	entered := make(chan struct{})
	var cause error
	var events []Event
	h := serve(Config{Store: s, OnEvent: func(e Event) { events = append(events, e) }}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		cause = context.Cause(r.Context())
		w.WriteHeader(http.StatusCreated) // the handler ignores the cancellation
	}))
	done := make(chan int)
	go func() { done <- post(h, "k", "{}").Code }()
	<-entered
	_, err := s.db.Exec(`UPDATE idempotency_records SET "id" = 'another-claim', "expiresAt" = "expiresAt" + interval '1 hour'`)
	require.NoError(t, err)

	<-done
	assert.ErrorIs(t, cause, ErrLeaseLost)
	// The write after the stop is reported, then the claim released: its
	// fence met the new claim.
	if assert.Len(t, events, 2) {
		assert.Equal(t, EventLateWrite, events[0].Kind)
		assert.Equal(t, http.StatusCreated, events[0].Status)
		assert.Equal(t, EventReleased, events[1].Kind)
		assert.Equal(t, "lease lost", events[1].Reason)
	}
	var id string
	var status int
	require.NoError(t, s.db.QueryRow(`SELECT "id", "responseStatus" FROM idempotency_records`).Scan(&id, &status))
	assert.Equal(t, "another-claim", id, "the new claim is untouched")
	assert.Zero(t, status)
}

// When the lease cannot be renewed before it ends (the claim's row stays
// locked past every renewal's lock timeout: the store is unusable), the
// handler's context is cancelled with ErrLeaseLost. An answer other than
// 2xx is released, so a retry runs the request; a 2xx means the work was
// done anyway, and is stored once the store answers again (nobody else
// claimed the key), so a retry replays it.
func TestMiddlewareUnrenewableLeaseCancelsHandler(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status   int
		replayed bool
	}{
		{http.StatusServiceUnavailable, false},
		{http.StatusCreated, true},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dbURL := pgtest.URL(t)
			db, err := database.OpenConfig(dbURL, database.Config{MaxOpenConns: 2, LockTimeout: 50 * time.Millisecond})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			locker := pgtest.Open(t, dbURL)
			s := NewStore(db, StoreConfig{Lease: 300 * time.Millisecond})

			var calls atomic.Int64
			var cause error
			h := serve(Config{Store: s, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) > 1 {
					w.WriteHeader(http.StatusAccepted)
					return
				}
				tx, err := locker.BeginTx(ctx, nil)
				require.NoError(t, err)
				_, err = tx.ExecContext(ctx, `SELECT 1 FROM idempotency_records FOR UPDATE`)
				require.NoError(t, err)
				<-r.Context().Done()
				cause = context.Cause(r.Context())
				require.NoError(t, tx.Rollback())
				w.WriteHeader(tc.status)
			}))
			assert.Equal(t, tc.status, post(h, "k", "{}").Code)
			assert.ErrorIs(t, cause, ErrLeaseLost)

			w := post(h, "k", "{}")
			if tc.replayed {
				assert.Equal(t, tc.status, w.Code)
				assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"), "the completed work was stored")
				assert.Equal(t, int64(1), calls.Load())
			} else {
				assert.Equal(t, http.StatusAccepted, w.Code)
				assert.Empty(t, w.Header().Get("Idempotent-Replayed"), "nothing was stored: the request ran again")
				assert.Equal(t, int64(2), calls.Load())
			}
		})
	}
}

// The claim runs detached from the request: a client that goes away while
// its claim is being written does not leave the key claimed for a lease;
// the claim, once written, is released at once.
func TestMiddlewareReleasesClaimOfVanishedClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	s := NewStore(bounded(t, dbURL, 2), StoreConfig{})
	var calls atomic.Int64
	var events []Event
	h := serve(Config{Store: s, OnEvent: func(e Event) { events = append(events, e) }}, created(&calls))

	// An expired claim on the key, locked by another session: the next
	// claim waits for that lock.
	res, err := s.Begin(ctx, Request{Key: "k", Route: route, Fingerprint: Fingerprint(http.MethodPost, route, "/orders", "", "application/json", []byte("{}"))})
	require.NoError(t, err)
	require.NotNil(t, res.Claim)
	_, err = s.db.Exec(`UPDATE idempotency_records SET "expiresAt" = ` + dbNow + ` - interval '1 second'`)
	require.NoError(t, err)
	locker := pgtest.Open(t, dbURL)
	tx, err := locker.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, `SELECT 1 FROM idempotency_records FOR UPDATE`)
	require.NoError(t, err)

	reqCtx, cancel := context.WithCancel(ctx)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- postCtx(reqCtx, h, "k", "{}") }()
	// Wait until the claim statement waits on the lock.
	deadline := time.Now().Add(30 * time.Second) // a bound against a hang
	for waiting := 0; waiting == 0; {
		require.NoError(t, locker.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
		require.True(t, time.Now().Before(deadline), "the claim never waited on the lock")
	}
	cancel() // the client goes away
	require.NoError(t, tx.Rollback())
	<-done

	assert.Zero(t, calls.Load(), "the handler did not run for a client that left")
	if assert.Len(t, events, 1) {
		assert.Equal(t, EventReleased, events[0].Kind)
		assert.Equal(t, "canceled", events[0].Reason)
	}
	var n int
	require.NoError(t, s.db.QueryRow(`SELECT count(*) FROM idempotency_records`).Scan(&n))
	assert.Zero(t, n, "the claim was released, not left to block the key")
	assert.Equal(t, http.StatusCreated, post(h, "k", "{}").Code, "a retry runs at once")
}

// A handler that hijacks the connection answers outside the recorder:
// nothing is stored (no empty 200 is replayed), the claim is released, and
// a retry runs the handler again.
func TestMiddlewareHijackStoresNothing(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var calls atomic.Int64
	released := make(chan Event, 2)
	srv := httptest.NewServer(Middleware(Config{Store: s, OnEvent: func(e Event) {
		if e.Kind == EventReleased || e.Kind == EventStored {
			released <- e
		}
	}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		_, _ = brw.WriteString("HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		_ = brw.Flush()
		_ = conn.Close()
	})))
	t.Cleanup(srv.Close)
	raw := func() string {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		fmt.Fprintf(c, "POST /x HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		return string(b)
	}
	for i := range 2 {
		assert.Contains(t, raw(), "202 Accepted", "the handler answered request %d", i)
		e := <-released // the middleware is done with the key
		assert.Equal(t, EventReleased, e.Kind)
		assert.Equal(t, "hijacked", e.Reason)
	}
	assert.Equal(t, int64(2), calls.Load(), "nothing was stored: the retry ran again")
}

// A handler that finishes just before its lease ends still gets a full
// attempt to store its response: the fence, not the lease's last
// microseconds, keeps a late store safe.
func TestMiddlewareStoresResponseFinishedAtLeaseEnd(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Now: clk.Now, Lease: time.Minute})
	var calls atomic.Int64
	var kinds []EventKind
	h := serve(Config{Store: s, OnEvent: func(e Event) { kinds = append(kinds, e.Kind) }}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		clk.Advance(time.Minute - 50*time.Microsecond) // the handler took almost the whole lease
		w.WriteHeader(http.StatusCreated)
	}))
	require.Equal(t, http.StatusCreated, post(h, "k", "{}").Code)
	// The clock jumped to the lease's end inside the handler: the lease
	// guard may have told it to stop before it wrote (a late write,
	// reported), but its 2xx is stored all the same.
	require.NotEmpty(t, kinds)
	assert.Equal(t, EventStored, kinds[len(kinds)-1], "%v", kinds)
	assert.NotContains(t, kinds, EventReleased)
	assert.Equal(t, "true", post(h, "k", "{}").Header().Get("Idempotent-Replayed"))
	assert.Equal(t, int64(1), calls.Load())
}

// A request whose client went away while the handler ran, but whose
// handler returned a final 2xx, did its work: the response is stored and a
// retry replays it instead of running the request again.
func TestMiddlewareStoresCompletedWorkOfCanceledRequest(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var calls atomic.Int64
	var cancel context.CancelFunc
	h := serve(Config{Store: s}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		cancel() // the client goes away while the handler runs
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"order":1}`)
	}))
	ctx, c := context.WithCancel(context.Background())
	cancel = c
	postCtx(ctx, h, "k", "{}")

	again := post(h, "k", "{}")
	assert.Equal(t, http.StatusCreated, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, `{"order":1}`, again.Body.String())
	assert.Equal(t, int64(1), calls.Load(), "the work ran once")
}

// The Content-Type of a replay is the original's, however the handler wrote
// its body: a Flush or an empty Write before the body commits the headers,
// and the default type is set then, so net/http sniffs neither the original
// (from its first chunk) nor the replay (from the whole body).
func TestMiddlewareReplayContentTypeAfterFlush(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	stored := make(chan struct{}, 1)
	srv := httptest.NewServer(Middleware(Config{Store: s, OnEvent: func(e Event) {
		if e.Kind == EventStored {
			stored <- struct{}{}
		}
	}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flush":
			w.WriteHeader(http.StatusCreated)
			_ = http.NewResponseController(w).Flush() // e.g. a streaming handler
		case "/empty":
			_, _ = w.Write(nil)
		case "/suppressed":
			w.Header()["Content-Type"] = nil
		}
		_, _ = w.Write([]byte(`<html><body>ok</body></html>`))
	})))
	t.Cleanup(srv.Close)
	do := func(path string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Idempotency-Key", "k")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp, string(b)
	}
	for path, want := range map[string][]string{"/flush": {"application/json"}, "/empty": {"application/json"}, "/suppressed": nil} {
		first, body := do(path)
		<-stored
		again, replayed := do(path)
		require.Equal(t, "true", again.Header.Get("Idempotent-Replayed"), path)
		assert.Equal(t, want, first.Header["Content-Type"], path)
		assert.Equal(t, want, again.Header["Content-Type"], path)
		assert.Equal(t, body, replayed, path)
	}
}

// A handler that gives up when its request is cancelled, or its lease lost,
// and writes nothing did no work: nothing is stored (not net/http's
// implicit empty 200), and a retry runs the request.
func TestMiddlewareHandlerThatGaveUpStoresNothing(t *testing.T) {
	t.Parallel()
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
		var calls atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		h := serve(Config{Store: s}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				cancel() // the client goes away
				<-r.Context().Done()
				return // no work done, nothing written
			}
			w.WriteHeader(http.StatusCreated)
		}))
		postCtx(ctx, h, "k", "{}")
		again := post(h, "k", "{}")
		assert.Empty(t, again.Header().Get("Idempotent-Replayed"))
		assert.Equal(t, http.StatusCreated, again.Code)
		assert.Equal(t, int64(2), calls.Load(), "the retry ran the request")
	})
	t.Run("lease lost", func(t *testing.T) {
		t.Parallel()
		s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Lease: 300 * time.Millisecond})
		var calls atomic.Int64
		entered, canceled, proceed := make(chan struct{}), make(chan struct{}), make(chan struct{})
		h := serve(Config{Store: s, Logger: slog.New(slog.DiscardHandler)}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				close(entered)
				<-r.Context().Done()
				close(canceled)
				<-proceed
				return // gave up on ErrLeaseLost, wrote nothing
			}
			w.WriteHeader(http.StatusCreated)
		}))
		done := make(chan struct{})
		go func() { post(h, "k", "{}"); close(done) }()
		<-entered
		// Hide the claim from the renewal's fence, then restore it: the
		// lease is lost, but nobody re-claimed the key.
		_, err := s.db.Exec(`UPDATE idempotency_records SET "responseStatus" = -1`)
		require.NoError(t, err)
		<-canceled
		_, err = s.db.Exec(`UPDATE idempotency_records SET "responseStatus" = 0`)
		require.NoError(t, err)
		close(proceed)
		<-done
		again := post(h, "k", "{}")
		assert.Empty(t, again.Header().Get("Idempotent-Replayed"))
		assert.Equal(t, http.StatusCreated, again.Code)
		assert.Equal(t, int64(2), calls.Load(), "the retry ran the request")
	})
}

// A handler whose response cannot even be finished (an invalid status
// makes net/http panic when the recorder sends it) releases its claim like
// any panicking handler, instead of blocking the key for a lease.
func TestMiddlewarePanicWhileFinishingReleasesClaim(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var calls atomic.Int64
	h := serve(Config{Store: s}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(42)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	assert.Panics(t, func() { post(h, "k", "{}") })
	assert.Equal(t, http.StatusCreated, post(h, "k", "{}").Code, "the key was released")
}

// The first renewal is due a third of the lease after the claim, not after
// the handler starts: a claim that waited (for a lock, or a connection)
// has already used part of its lease. Here only a tenth of the lease is
// left when the handler starts; the renewal must come at once, while a
// renewal a third of the lease later would find the lease over.
func TestMiddlewareRenewsLeaseCountedFromTheClaim(t *testing.T) {
	t.Parallel()
	const lease = 3 * time.Second
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Lease: lease})
	res, err := s.Begin(context.Background(), Request{Key: "k", Route: route,
		Fingerprint: Fingerprint(http.MethodPost, route, "/orders", "", "application/json", []byte("{}"))})
	require.NoError(t, err)
	c := res.Claim
	require.NotNil(t, c)
	// A third left: under the two thirds at which a renewal is due, above
	// the margin at which the handler is stopped (leaseMargin).
	left := lease / 3
	c.setLease(c.LeaseExpiresAt().Add(left-lease), time.Now().Add(left))

	renewed, lostCh := make(chan struct{}, 1), make(chan error, 1)
	log := logger{l: slog.New(onMessage{"lease renewed", func() {
		select {
		case renewed <- struct{}{}:
		default:
		}
	}})}
	m := &middleware{cfg: Config{Store: s}.resolve()}
	stop := m.keepAlive(c, log, func(err error) { lostCh <- err })
	defer stop()
	select {
	case <-renewed:
	case err := <-lostCh:
		t.Fatalf("the lease was lost before the first renewal: %v", err)
	}
	assert.Greater(t, time.Until(c.leaseDeadline()), left, "the lease runs a full lease ahead again")
}

// A handler that panics after its lease was lost and its key re-claimed
// still has its claim counted as released: the release meets the new
// claim's fence, which is no error.
func TestMiddlewarePanicAfterLostLeaseReleases(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Lease: 300 * time.Millisecond})
	entered := make(chan struct{})
	var events []Event
	var errorsLogged atomic.Int64
	h := serve(Config{Store: s, OnEvent: func(e Event) { events = append(events, e) },
		Logger: slog.New(onMessage{"not released", func() { errorsLogged.Add(1) }})},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-r.Context().Done()
			panic("handler failed")
		}))
	done := make(chan any)
	go func() {
		defer func() { done <- recover() }()
		post(h, "k", "{}")
	}()
	<-entered
	_, err := s.db.Exec(`UPDATE idempotency_records SET "id" = 'another-claim', "expiresAt" = "expiresAt" + interval '1 hour'`)
	require.NoError(t, err)
	assert.Equal(t, "handler failed", <-done, "the panic goes on up")
	if assert.Len(t, events, 1) {
		assert.Equal(t, EventReleased, events[0].Kind)
		assert.Equal(t, "panic", events[0].Reason)
	}
	assert.Zero(t, errorsLogged.Load(), "no false \"claim not released\" error")
	var id string
	require.NoError(t, s.db.QueryRow(`SELECT "id" FROM idempotency_records`).Scan(&id))
	assert.Equal(t, "another-claim", id, "the new claim is untouched")
}
