package idem

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

// The headers that say how the body's bytes are read are replayed with
// them: a gzip body replays as gzip, in its language, decodable.
func TestMiddlewareReplaysRepresentationHeaders(t *testing.T) {
	t.Parallel()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	var calls atomic.Int64
	h := serve(Config{Store: s}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Language", "de")
		w.WriteHeader(http.StatusCreated)
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, `{"bestellung":1}`)
		_ = zw.Close()
	}))
	first := post(h, "k", "{}", "Accept-Encoding", "gzip")
	again := post(h, "k", "{}", "Accept-Encoding", "gzip")
	require.Equal(t, http.StatusCreated, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.Bytes(), again.Body.Bytes())
	for _, h := range []string{"Content-Type", "Content-Encoding", "Content-Language"} {
		assert.Equal(t, first.Header().Get(h), again.Header().Get(h), h)
	}
	zr, err := gzip.NewReader(bytes.NewReader(again.Body.Bytes()))
	require.NoError(t, err)
	plain, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, `{"bestellung":1}`, string(plain))
	assert.Equal(t, int64(1), calls.Load())
}
