package idem

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

// JSON bodies are compared by RFC 8785: numbers by value, so 1.0 after 1
// is a retry (replayed), not another request (422).
func TestMiddlewareJSONNumbersByValue(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	h := serve(Config{Store: NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})}, created(&calls))
	require.Equal(t, http.StatusCreated, post(h, "k", `{"qty":1}`).Code)
	for _, body := range []string{`{"qty":1.0}`, `{"qty":1e0}`, `{ "qty" : 10E-1 }`} {
		again := post(h, "k", body)
		assert.Equal(t, http.StatusCreated, again.Code, body)
		assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"), body)
	}
	assertProblemType(t, post(h, "k", `{"qty":1.5}`), http.StatusUnprocessableEntity, ProblemKeyMismatch)
	assert.Equal(t, int64(1), calls.Load())
}

// A body its JSON content type says is JSON, that is invalid or repeats a
// member (whose value receivers disagree on), is refused before the store
// is asked and before the handler runs; with another type it is hashed as
// sent.
func TestMiddlewareRefusesInvalidJSON(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	h := serve(Config{Store: NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})}, created(&calls))
	patch := withContentType(h, "application/merge-patch+json")
	for _, body := range []string{`{"qty":1,"qty":2}`, `{"a":{"b":1,"\u0062":2}}`, `{"qty":`, `{"qty":1} {}`, "{\"name\":\"\xff\"}"} {
		assertProblemType(t, post(h, "k", body), http.StatusBadRequest, ProblemRequestInvalid)
		assertProblemType(t, post(patch, "k", body), http.StatusBadRequest, ProblemRequestInvalid)
	}
	assert.Zero(t, calls.Load())

	plain := withContentType(h, "text/plain")
	assert.Equal(t, http.StatusCreated, post(plain, "t", `{"qty":1,"qty":2}`).Code, "not JSON by its type: hashed as sent")
	assert.Equal(t, "true", post(plain, "t", `{"qty":1,"qty":2}`).Header().Get("Idempotent-Replayed"))
	assert.Equal(t, http.StatusCreated, post(h, "empty", "").Code, "an empty body is no JSON to refuse")
	assert.Equal(t, int64(2), calls.Load())
}

// withContentType replaces the request's Content-Type before h sees it.
func withContentType(h http.Handler, ct string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Content-Type", ct)
		h.ServeHTTP(w, r)
	})
}

// A record made before fingerprint version 3 was deployed (its
// requestHash of version 2) still matches its retries: replayed, or 409
// while in flight, never 422 and never a second run.
func TestMiddlewareMatchesPreviousFingerprintVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var calls atomic.Int64
	h := serve(Config{Store: s}, created(&calls))
	body := "{\"sku\":\"a\",\n \"qty\":1}"
	old := fingerprintV2(http.MethodPost, route, "/orders", "", "application/json", []byte(body))
	require.NotEqual(t, old, Fingerprint(http.MethodPost, route, "/orders", "", "application/json", []byte(body)))

	// In flight across the deploy.
	res, err := s.Begin(ctx, Request{Key: "k", Route: route, Fingerprint: old})
	require.NoError(t, err)
	assertProblemType(t, post(h, "k", body), http.StatusConflict, ProblemInFlight)
	// Completed by the instance of the previous version.
	require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: http.StatusCreated, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"order":7}`)}))
	for _, retry := range []string{body, `{"qty":1,"sku":"a"}`} {
		w := post(h, "k", retry)
		assert.Equal(t, http.StatusCreated, w.Code)
		assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"))
		assert.Equal(t, `{"order":7}`, w.Body.String())
	}
	assertProblemType(t, post(h, "k", `{"sku":"b","qty":1}`), http.StatusUnprocessableEntity, ProblemKeyMismatch)
	assert.Zero(t, calls.Load())
}
