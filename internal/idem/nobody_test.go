package idem

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

// A 204 or 304 carries no body, whatever its handler wrote: net/http sends
// none, so none is stored, and the replay has none either.
func TestMiddlewareStoresNoBodyForNoContent(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	for _, status := range []int{http.StatusNoContent, http.StatusNotModified} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var calls atomic.Int64
			mux := http.NewServeMux()
			mux.Handle("POST /orders/{status}", Middleware(Config{Store: s})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(status)
				_, _ = io.WriteString(w, `{"written":"but not sent"}`)
			})))
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			path := "/orders/" + http.StatusText(status)[:3]
			do := func() (*http.Response, string) {
				req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader("{}"))
				require.NoError(t, err)
				req.Header.Set("Idempotency-Key", "k")
				resp, err := srv.Client().Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}
			first, body := do()
			assert.Equal(t, status, first.StatusCode)
			assert.Empty(t, body)

			var stored string
			require.NoError(t, s.db.QueryRow(`SELECT "responseBodyJson" FROM idempotency_records WHERE "route" = $1`,
				"POST /orders/{status}").Scan(&stored))
			resp, err := decodeResponse(status, stored)
			require.NoError(t, err)
			assert.Empty(t, resp.Body, "stored what was sent: no body")

			again, body := do()
			assert.Equal(t, status, again.StatusCode)
			assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
			assert.Empty(t, again.Header.Get("Content-Length"))
			assert.Empty(t, body)
			assert.Equal(t, int64(1), calls.Load())
			_, err = s.db.Exec(`DELETE FROM idempotency_records`)
			require.NoError(t, err)
		})
	}
}
