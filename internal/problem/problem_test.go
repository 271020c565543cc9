package problem_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/problem"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		retry time.Duration
		want  string
	}{{0, ""}, {time.Second, "1"}, {1500 * time.Millisecond, "2"}, {time.Millisecond, "1"}} {
		w := httptest.NewRecorder()
		problem.Write(w, http.StatusConflict, "in flight", tc.retry)
		assert.Equal(t, http.StatusConflict, w.Code)
		assert.Equal(t, problem.ContentType, w.Header().Get("Content-Type"))
		assert.Equal(t, tc.want, w.Header().Get("Retry-After"), "retry after %s", tc.retry)
		var d problem.Details
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &d))
		assert.Equal(t, problem.Details{Type: "about:blank", Title: "Conflict", Status: 409, Detail: "in flight"}, d)
	}
}
