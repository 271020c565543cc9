// Package devdb provides scratch databases on a PostgreSQL server: the "dev
// database" Atlas and ent need to replay migrations and compute diffs. The
// server is the one named by a URL, or a throwaway local cluster.
package devdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"

	"github.com/lib/pq"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgcluster"
)

// Server creates and drops scratch databases. Close it when done.
type Server struct {
	url     *url.URL
	db      *sql.DB
	cluster *pgcluster.Cluster
}

// Connect uses the server of rawURL, a postgres:// URL taken as
// [database.DSN] takes it, which needs the CREATEDB privilege, or with an
// empty rawURL starts a throwaway local cluster (see [pgcluster]).
func Connect(ctx context.Context, rawURL string) (*Server, error) {
	s := &Server{}
	if rawURL == "" {
		c, err := pgcluster.Start(ctx, pgcluster.Options{})
		if errors.Is(err, pgcluster.ErrNoBinaries) {
			return nil, fmt.Errorf("%w, or name a server for scratch databases with --dev-url (DEV_DATABASE_URL)", err)
		}
		if err != nil {
			return nil, err
		}
		s.cluster = c
		rawURL = c.URL("postgres")
	}
	// The settings of every other connection: TLS off for a local host
	// unless the URL says otherwise, sessions in UTC.
	dsn, err := database.DSN(rawURL)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("devdb: dev URL: %w", err)
	}
	if s.url, err = url.Parse(dsn); err != nil {
		s.Close()
		return nil, fmt.Errorf("devdb: parse dev URL: %w", database.ParseError(err))
	}
	if s.db, err = sql.Open("postgres", dsn); err == nil {
		err = s.db.PingContext(ctx)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("devdb: connect to dev server %s: %w", database.Redact(rawURL), err)
	}
	return s, nil
}

// Create makes an empty database and returns its URL and a function that
// drops it.
func (s *Server) Create(ctx context.Context, prefix string) (string, func(), error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	if _, err := s.db.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		return "", nil, fmt.Errorf("devdb: create database %s: %w", name, err)
	}
	u := *s.url
	u.Path = "/" + name
	drop := func() {
		_, _ = s.db.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}

// Close closes the connection and stops the local cluster, if any.
func (s *Server) Close() {
	if s.db != nil {
		_ = s.db.Close()
	}
	if s.cluster != nil {
		_ = s.cluster.Stop()
	}
}
