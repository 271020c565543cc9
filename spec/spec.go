// Package spec holds the Prisma migration 20260114210000_add_auth_attempt_and_idempotency,
// the schema the Go side must equal, and the Prisma models it came from.
package spec

import _ "embed"

// MigrationSQL is migration.sql, the spec.
//
//go:embed migration.sql
var MigrationSQL string

// Version and Name identify the Prisma migration the spec is.
const (
	Version = "20260114210000"
	Name    = "add_auth_attempt_and_idempotency"
)
