package lockout_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/problem"
)

func TestWriteDenied(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d          lockout.Decision
		status     int
		retryAfter string
	}{
		{lockout.Decision{Limit: lockout.LimitPair, RetryAfter: 15 * time.Minute}, http.StatusTooManyRequests, "900"},
		{lockout.Decision{Limit: lockout.LimitIP, RetryAfter: 0}, http.StatusTooManyRequests, "1"},
		{lockout.Decision{Limit: lockout.LimitUnavailable}, http.StatusServiceUnavailable, ""},
	} {
		w := httptest.NewRecorder()
		lockout.WriteDenied(w, tc.d)
		assert.Equal(t, tc.status, w.Code)
		assert.Equal(t, tc.retryAfter, w.Header().Get("Retry-After"))
		assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
		assert.Equal(t, problem.ContentType, w.Header().Get("Content-Type"))
		var body problem.Details
		if assert.NoError(t, json.Unmarshal(w.Body.Bytes(), &body)) {
			assert.Equal(t, tc.status, body.Status)
		}
	}
	// The body does not depend on which limit fired, so it reveals nothing
	// about the account.
	a, b := httptest.NewRecorder(), httptest.NewRecorder()
	lockout.WriteDenied(a, lockout.Decision{Limit: lockout.LimitPair, RetryAfter: time.Minute})
	lockout.WriteDenied(b, lockout.Decision{Limit: lockout.LimitEmail, RetryAfter: time.Minute})
	assert.Equal(t, a.Body.String(), b.Body.String())
	assert.Equal(t, a.Header(), b.Header())
}
