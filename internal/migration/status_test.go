package migration_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/klozd/api/internal/migration"
)

func TestStatusState(t *testing.T) {
	t.Parallel()
	failed := []migration.FailedRevision{{Version: "2"}}
	for _, tc := range []struct {
		st   migration.Status
		want string
	}{
		{migration.Status{Applied: []string{"1"}}, migration.StateUpToDate},
		{migration.Status{Pending: []string{"2_b.sql"}}, migration.StatePending},
		{migration.Status{OutOfOrder: []string{"2_b.sql"}}, migration.StatePending},
		{migration.Status{Pending: []string{"3_c.sql"}, Failed: failed}, migration.StateFailed},
		{migration.Status{Pending: []string{"3_c.sql"}, Failed: failed, Unknown: []string{"9"}}, migration.StateUnknown},
	} {
		assert.Equal(t, tc.want, tc.st.State(), "%+v", tc.st)
	}
}
