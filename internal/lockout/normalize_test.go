package lockout_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"

	"github.com/klozd/api/internal/lockout"
)

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want, reason string }{
		{"ann@example.org", "ann@example.org", ""},
		{"  Ann@Example.ORG\t\n", "ann@example.org", ""},
		{"E\u0301lise@example.org", "\u00e9lise@example.org", ""}, // decomposed É → composed é
		{"\u00c9LISE@example.org", "\u00e9lise@example.org", ""},
		{"", "", "empty"},
		{" \t ", "", "empty"},
		{"ann\x00@example.org", "", "contains a control character"},
		{"ann\n@example.org", "", "contains a control character"},
		{"ann\u0085@example.org", "", "contains a control character"},
		{"ann\xff@example.org", "", "not valid UTF-8"},
		{"\ufeffann@example.org", "", "contains an invisible character"},           // BOM
		{"an\u200bn@example.org", "", "contains an invisible character"},           // zero-width space
		{"an\u00adn@example.org", "", "contains an invisible character"},           // soft hyphen
		{"an\u034fn@example.org", "", "contains an invisible character"},           // combining grapheme joiner
		{"ann\ufe0f@example.org", "", "contains an invisible character"},           // variation selector
		{"ann@\u0645\u06cc\u200c\u0631.ir", "ann@\u0645\u06cc\u200c\u0631.ir", ""}, // ZWNJ, allowed in IDNA2008 labels
		{strings.Repeat("a", 309) + "@example.org", "", "longer than 320 bytes"},
		{strings.Repeat("a", 308) + "@example.org", strings.Repeat("a", 308) + "@example.org", ""},
	} {
		got, err := lockout.NormalizeEmail(tc.in)
		if tc.reason == "" {
			assert.NoError(t, err, "%q", tc.in)
			assert.Equal(t, tc.want, got, "%q", tc.in)
			continue
		}
		var ee *lockout.EmailError
		if assert.ErrorAs(t, err, &ee, "%q", tc.in) {
			assert.Equal(t, tc.reason, ee.Reason, "%q", tc.in)
		}
		assert.ErrorIs(t, err, lockout.ErrInvalidEmail)
		assert.Empty(t, got)
	}
}

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{
		"ann@example.org", " Ann@Example.ORG ", "E\u0301lise@example.org", "\u0130stanbul@x.tr",
		"", "\x00", "a\xffb", "\u212a@x", "ß@x", strings.Repeat("é", 200), "\u0345\u0399@x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := lockout.NormalizeEmail(in)
		if err != nil {
			assert.ErrorIs(t, err, lockout.ErrInvalidEmail)
			assert.Empty(t, got)
			return
		}
		assert.NotEmpty(t, got)
		assert.LessOrEqual(t, len(got), lockout.MaxEmailBytes)
		assert.True(t, utf8.ValidString(got))
		assert.True(t, norm.NFC.IsNormalString(got), "NFC")
		assert.Equal(t, strings.TrimSpace(got), got, "trimmed")
		assert.Equal(t, -1, strings.IndexFunc(got, unicode.IsControl), "no control characters")
		assert.Equal(t, -1, strings.IndexFunc(got, func(r rune) bool {
			return r != '\u200c' && r != '\u200d' && unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
		}), "no invisible characters")
		again, err := lockout.NormalizeEmail(got)
		require.NoError(t, err, "a normalised email is valid")
		assert.Equal(t, got, again, "normalising is idempotent")
	})
}

func TestNormalizeIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		prefix int
		want   string
	}{
		{"1.2.3.4", 64, "1.2.3.4"},
		{" 1.2.3.4 ", 64, "1.2.3.4"},
		{"1.2.3.4:5678", 64, "1.2.3.4"},
		{"::ffff:1.2.3.4", 64, "1.2.3.4"},
		{"[::ffff:1.2.3.4]:443", 64, "1.2.3.4"},
		{"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
		{"2001:DB8:1:2::ffff", 64, "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::1]:80", 64, "2001:db8:1:2::/64"},
		{"fe80::1%eth0", 64, "fe80::/64"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
		{"", 64, ""},
		{"unknown", 64, ""},
		{"1.2.3.256", 64, ""},
		{"1.2.3.4/24", 64, ""},
	} {
		assert.Equal(t, tc.want, lockout.NormalizeIP(tc.in, tc.prefix), "%q /%d", tc.in, tc.prefix)
	}
}
