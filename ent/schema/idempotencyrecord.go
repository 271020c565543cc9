package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// IdempotencyRecord stores the response to a request sent with an
// Idempotency-Key, one per (key, route). The table is the one the Prisma
// migration 20260114210000_add_auth_attempt_and_idempotency created.
type IdempotencyRecord struct {
	ent.Schema
}

// Annotations maps the schema to the "idempotency_records" table.
func (IdempotencyRecord) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Table("idempotency_records")}
}

// Mixin adds the cuid primary key and the UTC-millisecond time hook.
func (IdempotencyRecord) Mixin() []ent.Mixin {
	return []ent.Mixin{idMixin{}, utcMillisMixin{}}
}

// Fields of IdempotencyRecord, in the column order of the spec.
func (IdempotencyRecord) Fields() []ent.Field {
	return []ent.Field{
		// Key is the stored form of the Idempotency-Key header value.
		field.String("key").
			SchemaType(textType),
		// Route is the route pattern the key is scoped to.
		field.String("route").
			SchemaType(textType),
		// RequestHash is the fingerprint of the first request sent with the key.
		field.String("request_hash").
			StorageKey("requestHash").
			SchemaType(textType),
		// ResponseStatus is the stored HTTP status code.
		field.Int("response_status").
			StorageKey("responseStatus").
			SchemaType(integerType),
		// ResponseBodyJSON is the stored response body.
		field.Text("response_body_json").
			StorageKey("responseBodyJson").
			SchemaType(textType),
		// CreatedAt is when the record was first written.
		field.Time("created_at").
			StorageKey("createdAt").
			SchemaType(timestampType).
			Default(nowUTC).
			Immutable().
			Annotations(currentTimestamp),
		// ExpiresAt is when the record stops being replayed.
		field.Time("expires_at").
			StorageKey("expiresAt").
			SchemaType(timestampType),
		// OrganizationID is the tenant the record belongs to, if any.
		field.String("organization_id").
			StorageKey("organizationId").
			SchemaType(textType).
			Optional().
			Nillable(),
		// IP is the client address, stored only when configured.
		field.String("ip").
			SchemaType(textType).
			Optional().
			Nillable(),
	}
}

// Indexes of IdempotencyRecord, named as in the spec.
func (IdempotencyRecord) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("key", "route").Unique().StorageKey("idempotency_records_key_route_key"),
		index.Fields("expires_at").StorageKey("idempotency_records_expiresAt_idx"),
		index.Fields("organization_id").StorageKey("idempotency_records_organizationId_idx"),
	}
}
