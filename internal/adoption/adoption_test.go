package adoption_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/adoption"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/spec"
)

func TestBaselineFor(t *testing.T) {
	t.Parallel()
	dir, err := migration.Embedded()
	require.NoError(t, err)
	prisma := spec.Version + "_" + spec.Name

	v, err := adoption.BaselineFor(&adoption.Prisma{Finished: []string{prisma}}, dir)
	require.NoError(t, err)
	assert.Equal(t, spec.Version, v)

	v, err = adoption.BaselineFor(&adoption.Prisma{}, dir)
	require.NoError(t, err)
	assert.Empty(t, v, "an empty _prisma_migrations asks for no baseline")

	_, err = adoption.BaselineFor(&adoption.Prisma{Finished: []string{prisma}, Unfinished: []string{"20260301000000_half"}}, dir)
	assert.ErrorContains(t, err, "20260301000000_half started but did not finish")

	_, err = adoption.BaselineFor(&adoption.Prisma{Finished: []string{prisma, "20260401000000_only_in_prisma"}}, dir)
	assert.ErrorContains(t, err, "Prisma migration 20260401000000_only_in_prisma, which the migration directory does not have")
}
