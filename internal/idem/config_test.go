package idem

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestConfigPanics(t *testing.T) {
	t.Parallel()
	s := &Store{}
	for name, build := range map[string]func(){
		"nil db":              func() { NewStore(nil, StoreConfig{}) },
		"negative TTL":        func() { NewStore(&sql.DB{}, StoreConfig{TTL: -time.Second}) },
		"sub-ms lease":        func() { NewStore(&sql.DB{}, StoreConfig{Lease: time.Microsecond}) },
		"nil store":           func() { Middleware(Config{}) },
		"bad header":          func() { Middleware(Config{Store: s, Header: "Idempotency Key"}) },
		"lower-case method":   func() { Middleware(Config{Store: s, Methods: []string{"post"}}) },
		"negative wait":       func() { Middleware(Config{Store: s, Wait: -1}) },
		"negative body":       func() { Middleware(Config{Store: s, MaxRequestBody: -1}) },
		"bad replay header":   func() { Middleware(Config{Store: s, ReplayHeaders: []string{"X:Y"}}) },
		"empty replay header": func() { Middleware(Config{Store: s, ReplayHeaders: []string{""}}) },
		"retry past the lease": func() {
			Middleware(Config{Store: &Store{cfg: StoreConfig{Lease: time.Minute}}, StoreRetry: time.Minute + time.Millisecond})
		},
	} {
		func() {
			defer func() {
				r := recover()
				if assert.NotNil(t, r, name) {
					assert.True(t, strings.HasPrefix(fmt.Sprint(r), "idem: "), "%s: %v", name, r)
				}
			}()
			build()
		}()
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{Store: &Store{}}.resolve()
	assert.Equal(t, "Idempotency-Key", c.Header)
	assert.Equal(t, []string{"POST", "PATCH"}, c.Methods)
	assert.Equal(t, int64(1<<20), c.MaxRequestBody)
	assert.Equal(t, 1<<20, c.MaxResponseBody)
	assert.Zero(t, c.Wait)
	assert.Equal(t, []string{"Content-Type", "Content-Encoding", "Content-Language", "Location"}, c.ReplayHeaders)
	c = Config{Store: &Store{}, ReplayHeaders: []string{"content-encoding", "etag", "ETag"}}.resolve()
	assert.Equal(t, []string{"Content-Type", "Content-Encoding", "Content-Language", "Etag"}, c.ReplayHeaders, "canonical, once each")
	assert.False(t, c.FailOpen)
	assert.Nil(t, c.IP)
	sc := StoreConfig{}.resolve()
	assert.Equal(t, 24*time.Hour, sc.TTL)
	assert.Equal(t, time.Minute, sc.Lease)
	assert.Equal(t, 1000, sc.PurgeBatch)
}

func TestConfigStoreRetry(t *testing.T) {
	t.Parallel()
	s := &Store{cfg: StoreConfig{Lease: 30 * time.Second}}
	assert.Equal(t, 30*time.Second, Config{Store: s}.resolve().StoreRetry, "default: the lease")
	assert.Equal(t, 5*time.Second, Config{Store: s, StoreRetry: 5 * time.Second}.resolve().StoreRetry)
	assert.Negative(t, Config{Store: s, StoreRetry: -1}.resolve().StoreRetry, "negative: no retries")
}
