package idem

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
	"github.com/klozd/api/internal/problem"
)

// assertProblemType asserts that w is the middleware's own problem typ,
// titled with RFC 9110's reason phrase for status.
func assertProblemType(t *testing.T, w *httptest.ResponseRecorder, status int, typ string) {
	t.Helper()
	assertProblem(t, w, status)
	var p problem.Details
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	assert.Equal(t, typ, p.Type)
}

// Each of the middleware's own answers names its problem type, so that a
// client can tell it from the handler's answer with the same status.
func TestMiddlewareProblemTypes(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 4), StoreConfig{})
	var calls atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	h := serve(Config{Store: s, MaxRequestBody: 64, Required: func(*http.Request) bool { return true }},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			if r.Header.Get("X-Hold") != "" {
				close(entered)
				<-release
			}
			w.WriteHeader(http.StatusCreated)
		}))
	require.Equal(t, http.StatusCreated, post(h, "done", `{"a":1}`).Code)
	done := make(chan struct{})
	go func() { defer close(done); post(h, "held", "{}", "X-Hold", "1") }()
	<-entered
	defer func() { close(release); <-done }()

	down := serve(Config{Store: NewStore(deadDB(t), StoreConfig{}), Logger: slog.New(slog.DiscardHandler)}, http.NotFoundHandler())
	for _, tc := range []struct {
		name   string
		w      *httptest.ResponseRecorder
		status int
		typ    string
	}{
		{"missing", post(h, "", "{}"), http.StatusBadRequest, ProblemKeyMissing},
		{"invalid", post(h, "ключ", "{}"), http.StatusBadRequest, ProblemKeyInvalid},
		{"several", post(h, "a", "{}", "Idempotency-Key", "b"), http.StatusBadRequest, ProblemKeyInvalid},
		{"list", post(h, "a2, b2", "{}"), http.StatusBadRequest, ProblemKeyInvalid},
		{"list of strings", post(h, `"a2", "b2"`, "{}"), http.StatusBadRequest, ProblemKeyInvalid},
		{"body too large", post(h, "k", `{"x":"`+strings.Repeat("x", 64)+`"}`), http.StatusRequestEntityTooLarge, ProblemRequestTooLarge},
		{"mismatch", post(h, "done", `{"a":2}`), http.StatusUnprocessableEntity, ProblemKeyMismatch},
		{"in flight", post(h, "held", "{}"), http.StatusConflict, ProblemInFlight},
		{"store down", post(down, "k", "{}"), http.StatusServiceUnavailable, ProblemStoreUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) { assertProblemType(t, tc.w, tc.status, tc.typ) })
	}
	assert.Equal(t, int64(2), calls.Load())
}

// A handler told to stop (its lease lost) that stops without an answer
// gets its client the typed 503.
func TestMiddlewareStoppedRequestProblemType(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Lease: 300 * time.Millisecond})
	entered := make(chan struct{})
	h := serve(Config{Store: s, Logger: slog.New(slog.DiscardHandler)}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // gives up on ErrLeaseLost, writes nothing
	}))
	res := make(chan *httptest.ResponseRecorder, 1)
	go func() { res <- post(h, "k", "{}") }()
	<-entered
	// Hide the claim from the renewal's fence: the lease is lost.
	_, err := s.db.Exec(`UPDATE idempotency_records SET "responseStatus" = -1`)
	require.NoError(t, err)
	assertProblemType(t, <-res, http.StatusServiceUnavailable, ProblemRequestStopped)
}
