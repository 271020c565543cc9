package schema

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"
	"github.com/lucsky/cuid"
)

// Column types of the spec. Without them ent would choose varchar, bigint
// and timestamptz.
var (
	textType      = map[string]string{dialect.Postgres: "text"}
	integerType   = map[string]string{dialect.Postgres: "integer"}
	timestampType = map[string]string{dialect.Postgres: "timestamp(3)"}
)

// currentTimestamp is the database default of the spec's time columns.
var currentTimestamp = entsql.Default("CURRENT_TIMESTAMP")

// nowUTC is the Go-side default of every time column: the columns are
// timestamp(3) without time zone, so only UTC milliseconds round-trip.
func nowUTC() time.Time { return UTCMillis(time.Now()) }

// UTCMillis returns t in UTC, truncated to the millisecond: the only form in
// which a time.Time survives a timestamp(3) column unchanged.
func UTCMillis(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// NewID returns a new cuid, the identifier Prisma's cuid() makes, drawn from
// crypto/rand.
func NewID() string {
	id, err := cuid.NewCrypto(rand.Reader)
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(fmt.Sprintf("schema: new cuid: %v", err))
	}
	return id
}

// idMixin is the text primary key filled with a cuid by the application.
type idMixin struct{ mixin.Schema }

// Fields of idMixin.
func (idMixin) Fields() []ent.Field {
	return []ent.Field{
		// ID is a cuid made by the application, as Prisma's @default(cuid()).
		field.String("id").
			SchemaType(textType).
			DefaultFunc(NewID).
			NotEmpty().
			Immutable(),
	}
}

// utcMillisMixin normalises every time written through the client.
type utcMillisMixin struct{ mixin.Schema }

// Hooks of utcMillisMixin.
func (utcMillisMixin) Hooks() []ent.Hook {
	return []ent.Hook{utcMillisHook}
}

// utcMillisHook rewrites each time.Time field of a create or update mutation
// to UTC milliseconds, so a time.Time in any location is stored as the same
// instant and the entity returned by Save equals the row read back.
func utcMillisHook(next ent.Mutator) ent.Mutator {
	return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
		for _, name := range m.Fields() {
			v, ok := m.Field(name)
			if !ok {
				continue
			}
			if t, isTime := v.(time.Time); isTime {
				if err := m.SetField(name, UTCMillis(t)); err != nil {
					return nil, fmt.Errorf("schema: normalise %s: %w", name, err)
				}
			}
		}
		return next.Mutate(ctx, m)
	})
}
