package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
)

// lineWriter hands each complete first line to ready.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan string
	sent  bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if line, _, ok := strings.Cut(w.buf.String(), "\n"); ok && !w.sent {
		w.sent = true
		w.ready <- line
	}
	return len(p), nil
}

func TestDevStartsMigratedAndStopsOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{ready: make(chan string, 1)}
	var errOut bytes.Buffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"dev", "--dir", "../../migrations"}, out, &errOut) }()

	var url string
	select {
	case url = <-out.ready:
	case code := <-done:
		t.Fatalf("dbctl dev exited %d: %s", code, errOut.String())
	}
	require.True(t, strings.HasPrefix(url, "postgres://"), url)
	db, err := database.Open(url)
	require.NoError(t, err)
	defer db.Close()
	assert.True(t, tableExists(t, db, "public.auth_attempts"))
	assert.Len(t, revisions(t, db, "atlas_schema_revisions"), 1)
	_ = db.Close()

	cancel()
	assert.Equal(t, exitOK, <-done, errOut.String())
	check, err := database.Open(url)
	require.NoError(t, err)
	defer check.Close()
	assert.Error(t, check.PingContext(context.Background()), "the server is stopped")
}
