package database_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgcluster"
)

// Over TLS, a pooled connection is reused: the check for a server that
// ended an idle session (it peeks at the socket) does not mistake TLS's
// own records for one.
func TestTLSConnectionIsReused(t *testing.T) {
	t.Parallel()
	dir := serverCert(t)
	c, err := pgcluster.Start(context.Background(), pgcluster.Options{Settings: map[string]string{
		"ssl": "on", "ssl_cert_file": filepath.Join(dir, "server.crt"), "ssl_key_file": filepath.Join(dir, "server.key")}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })
	url := strings.Replace(c.URL("postgres"), "sslmode=disable", "sslmode=require", 1)
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			db, err := database.OpenConfig(url, database.Config{Driver: drv, MaxOpenConns: 1})
			require.NoError(t, err)
			defer db.Close()
			var first, pid int
			var ssl bool
			require.NoError(t, db.QueryRow(`SELECT pid, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&first, &ssl))
			require.True(t, ssl, "the session runs over TLS")
			for range 20 {
				require.NoError(t, db.QueryRow(`SELECT pg_backend_pid()`).Scan(&pid))
				require.Equal(t, first, pid, "the TLS connection is reused, not dropped")
			}
		})
	}
}

// serverCert writes a self-signed certificate and its key where the
// server can read them: owned by the user it runs as when this is root.
func serverCert(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir, err := os.MkdirTemp("/tmp", "klozd-tls-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	files := map[string][]byte{
		"server.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"server.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		if os.Geteuid() == 0 {
			for _, n := range []string{"postgres", "nobody"} { // as pgcluster picks it
				if u, err := user.Lookup(n); err == nil {
					uid, _ := strconv.Atoi(u.Uid)
					gid, _ := strconv.Atoi(u.Gid)
					require.NoError(t, os.Chown(p, uid, gid))
					break
				}
			}
		}
	}
	return dir
}
