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

func TestWriteDetails(t *testing.T) {
	for _, tc := range []struct {
		in, want problem.Details
	}{
		{
			problem.Details{Type: "https://example.com/problems/out-of-stock", Status: http.StatusConflict, Detail: "sold out"},
			problem.Details{Type: "https://example.com/problems/out-of-stock", Title: "Conflict", Status: 409, Detail: "sold out"},
		},
		{
			problem.Details{Type: "https://example.com/problems/x", Title: "Custom", Status: http.StatusBadRequest},
			problem.Details{Type: "https://example.com/problems/x", Title: "Custom", Status: 400},
		},
		{
			problem.Details{Status: http.StatusUnprocessableEntity, Detail: "d"},
			problem.Details{Type: "about:blank", Title: "Unprocessable Content", Status: 422, Detail: "d"},
		},
	} {
		w := httptest.NewRecorder()
		problem.WriteDetails(w, tc.in, 2*time.Second)
		assert.Equal(t, tc.want.Status, w.Code)
		assert.Equal(t, problem.ContentType, w.Header().Get("Content-Type"))
		assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
		assert.Equal(t, "2", w.Header().Get("Retry-After"))
		var d problem.Details
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &d))
		assert.Equal(t, tc.want, d)
	}
}

// Titles are RFC 9110's reason phrases, including the codes it renamed.
func TestTitle(t *testing.T) {
	for status, want := range map[int]string{
		400: "Bad Request", 409: "Conflict", 413: "Content Too Large", 414: "URI Too Long",
		416: "Range Not Satisfiable", 422: "Unprocessable Content", 429: "Too Many Requests", 503: "Service Unavailable",
	} {
		assert.Equal(t, want, problem.Title(status), "%d", status)
	}
}
