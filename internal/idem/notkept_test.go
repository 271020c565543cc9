package idem

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

// A 2xx or 3xx too large to keep was done: its key stays done, and a retry
// hears so (409, its own problem type, no Retry-After) instead of running
// the handler again.
func TestMiddlewareTooLargeResponseKeepsKeyDone(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	big := strings.Repeat("x", 2000)
	for _, status := range []int{http.StatusOK, http.StatusCreated, http.StatusSeeOther} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var calls atomic.Int64
			var stored []Event
			h := serve(Config{Store: s, MaxResponseBody: 1500, Logger: slog.New(slog.DiscardHandler), OnEvent: func(e Event) {
				if e.Kind == EventStored {
					stored = append(stored, e)
				}
			}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Location", "/orders/1")
				w.WriteHeader(status)
				_, _ = io.WriteString(w, big)
			}))
			key := "big-" + strconv.Itoa(status)
			first := post(h, key, "{}")
			assert.Equal(t, status, first.Code)
			assert.Equal(t, big, first.Body.String(), "the client gets the whole body")
			if assert.Len(t, stored, 1) {
				assert.Equal(t, "not kept", stored[0].Reason)
			}
			for range 2 {
				again := post(h, key, "{}")
				assertProblemType(t, again, http.StatusConflict, ProblemResponseNotKept)
				assert.Empty(t, again.Header().Get("Retry-After"), "a retry gets the same answer")
				assert.Contains(t, again.Body.String(), "status "+strconv.Itoa(status))
			}
			assert.Equal(t, int64(1), calls.Load(), "never a second run")
		})
	}
}

// The record of a response not kept is a version 3 envelope, which an
// instance reading versions 1 and 2 refuses rather than replays; Begin
// returns it as NotKept with the status sent.
func TestStoreNotKeptEnvelope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	res, err := s.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: http.StatusCreated, NotKept: true}))
	require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: http.StatusCreated, NotKept: true}), "idempotent")

	var raw string
	require.NoError(t, s.db.QueryRow(`SELECT "responseBodyJson" FROM idempotency_records`).Scan(&raw))
	assert.JSONEq(t, `{"v":3,"notKept":true}`, raw)

	res, err = s.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NotNil(t, res.Replay)
	assert.Equal(t, Response{Status: http.StatusCreated, NotKept: true}, *res.Replay)

	for _, bad := range []string{`{"v":3}`, `{"v":3,"notKept":true,"body":"x"}`, `{"v":1,"notKept":true,"body":"x"}`} {
		_, err := decodeResponse(http.StatusCreated, bad)
		if bad[5] == '3' {
			assert.Error(t, err, bad)
		} else {
			// Versions 1 and 2 never carry notKept; an unknown member is
			// ignored, as by every reader of those versions.
			assert.NoError(t, err, bad)
		}
	}
}
