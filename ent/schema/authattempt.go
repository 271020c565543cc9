package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// AuthAttempt counts failed logins for one (email, ip) pair and holds its lock
// time. The table is the one the Prisma migration
// 20260114210000_add_auth_attempt_and_idempotency created, column for column.
type AuthAttempt struct {
	ent.Schema
}

// Annotations maps the schema to the "auth_attempts" table.
func (AuthAttempt) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Table("auth_attempts")}
}

// Mixin adds the cuid primary key and the UTC-millisecond time hook.
func (AuthAttempt) Mixin() []ent.Mixin {
	return []ent.Mixin{idMixin{}, utcMillisMixin{}}
}

// Fields of AuthAttempt, in the column order of the spec.
func (AuthAttempt) Fields() []ent.Field {
	return []ent.Field{
		// Email is the normalised address the failures were recorded for.
		field.String("email").
			SchemaType(textType),
		// IP is the client address (an IPv6 prefix in canonical text), or NULL when unknown.
		field.String("ip").
			SchemaType(textType).
			Optional().
			Nillable(),
		// FailuresCount is the number of failures in the current window.
		field.Int("failures_count").
			StorageKey("failuresCount").
			SchemaType(integerType).
			Default(0),
		// LockedUntil is the end of the current lock, NULL when never locked.
		field.Time("locked_until").
			StorageKey("lockedUntil").
			SchemaType(timestampType).
			Optional().
			Nillable(),
		// LastAttemptAt is the time of the latest failure; the window runs from it.
		field.Time("last_attempt_at").
			StorageKey("lastAttemptAt").
			SchemaType(timestampType).
			Default(nowUTC).
			Annotations(currentTimestamp),
		// CreatedAt is when the row was first written.
		field.Time("created_at").
			StorageKey("createdAt").
			SchemaType(timestampType).
			Default(nowUTC).
			Immutable().
			Annotations(currentTimestamp),
		// UpdatedAt is set by the application on create and on every update,
		// as Prisma's @updatedAt does; the column has no database default.
		// An upsert's UpdateNewValues moves it with the other new values; an
		// upsert's Update(func) writes only what the func sets, so call
		// UpdateUpdatedAt there too.
		field.Time("updated_at").
			StorageKey("updatedAt").
			SchemaType(timestampType).
			Default(nowUTC).
			UpdateDefault(nowUTC),
	}
}

// Indexes of AuthAttempt, named as in the spec.
func (AuthAttempt) Indexes() []ent.Index {
	return []ent.Index{
		// One row per (email, ip). PostgreSQL treats NULLs as distinct, so rows
		// with a NULL ip are kept unique by the lockout service, not by this index.
		index.Fields("email", "ip").Unique().StorageKey("auth_attempts_email_ip_key"),
		index.Fields("email").StorageKey("auth_attempts_email_idx"),
		index.Fields("ip").StorageKey("auth_attempts_ip_idx"),
		index.Fields("locked_until").StorageKey("auth_attempts_lockedUntil_idx"),
	}
}
