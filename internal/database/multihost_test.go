package database_test

import (
	"testing"

	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
)

// DSN keeps the meaning of a multi-host URL in the query form (host= and
// port= lists), which lib/pq reads: the same hosts, in the same order,
// and target_session_attrs. The failover soak scenario depends on it.
func TestDSNKeepsMultiHostQueryForm(t *testing.T) {
	const in = "postgres://u@/db?host=127.0.0.1,127.0.0.1&port=5001,5002&target_session_attrs=read-write&sslmode=disable"
	out, err := database.DSN(in)
	require.NoError(t, err)
	want, err := pq.NewConfig(in)
	require.NoError(t, err)
	got, err := pq.NewConfig(out)
	require.NoError(t, err)
	assert.Equal(t, []string{want.Host, "127.0.0.1"}, []string{got.Host, got.Multi[0].Host})
	assert.Equal(t, []uint16{5001, 5002}, []uint16{got.Port, got.Multi[0].Port})
	assert.Equal(t, want.Multi, got.Multi)
	assert.Equal(t, pq.TargetSessionAttrsReadWrite, got.TargetSessionAttrs)
	assert.Equal(t, "UTC", got.Runtime["timezone"])
}
