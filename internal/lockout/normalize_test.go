package lockout_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/width"

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

// TestNormalizeEmailVariants is the table of what counts as one account:
// each group's inputs share one key, the keys of different groups differ,
// and the refused inputs get no key at all (so no counter either).
func TestNormalizeEmailVariants(t *testing.T) {
	t.Parallel()
	groups := []struct {
		key string
		ins []string
	}{
		{"ann@example.org", []string{
			"ann@example.org", "Ann@Example.ORG", " ann@example.org\t",
			"\uff41\uff4e\uff4e@example.org", // fullwidth ａｎｎ
			"\uff21\uff2e\uff2e@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff4f\uff52\uff47", // ＡＮＮ@ｅｘａｍｐｌｅ．ｏｒｇ
			"ann@example.org.",     // the root label
			"ann@example\u3002org", // ideographic full stop, a label separator in IDNA
			"ann@\u24d4xample.org", // circled ⓔ in the domain: NFKC maps it, as UTS #46 does
			"ann@\u24baxample.org", // circled Ⓔ
		}},
		{"office@example.org", []string{
			"office@example.org", "OFFICE@example.org",
			"o\ufb00ice@example.org", // ligature ﬀ: full case folding maps it to ff
			"of\ufb01ce@example.org", // ligature ﬁ
			"\uff4f\uff46\uff46\uff49\uff43\uff45@example.org",
		}},
		{"office@eff.org", []string{"office@eff.org", "office@e\ufb00.org", "office@EFF.ORG"}},
		{"strasse@example.org", []string{
			"strasse@example.org", "STRASSE@example.org",
			"stra\u00dfe@example.org", // ß folds to ss
			"STRA\u1e9eE@example.org", // capital ẞ
		}},
		{"sam@example.org", []string{"sam@example.org", "SAM@example.org", "\u017fam@example.org"}},                      // long ſ folds to s
		{"ian@example.org", []string{"ian@example.org", "IAN@example.org", "\u0131an@example.org"}},                      // dotless ı, which upper-cases to I
		{"kim@example.org", []string{"kim@example.org", "\u212aim@example.org"}},                                         // Kelvin sign
		{"\u03c3\u03b1\u03c3@example.org", []string{"\u03a3\u0391\u03a3@example.org", "\u03c3\u03b1\u03c2@example.org"}}, // ΣΑΣ, σας
		{"\u00e9lise@example.org", []string{"\u00c9LISE@example.org", "E\u0301lise@example.org", "\u00e9lise@example.org"}},
		// Distinct from the groups above: accents, dots, tags and the
		// dotted İ matter; A-labels are not decoded (no IDNA here).
		{"elise@example.org", []string{"elise@example.org"}},
		{"ann.smith@example.org", []string{"Ann.Smith@example.org"}},
		{"annsmith@example.org", []string{"annsmith@example.org"}},
		{"ann+tag@example.org", []string{"ann+tag@example.org"}},
		{"ann@example.com", []string{"ann@example.com"}},
		{"i\u0307stanbul@x.tr", []string{"\u0130stanbul@x.tr"}},
		{"istanbul@x.tr", []string{"istanbul@x.tr", "ISTANBUL@x.tr"}},
		{"ann@xn--bcher-kva.example", []string{"ann@XN--BCHER-KVA.example"}},
		{"ann@b\u00fccher.example", []string{"ann@B\u00dcCHER.example"}},
		{"ann@\u0645\u06cc\u200c\u0631.ir", []string{"ann@\u0645\u06cc\u200c\u0631.ir"}}, // ZWNJ between joining letters: in context
		{"ann@\u0645\u06cc\u0631.ir", []string{"ann@\u0645\u06cc\u0631.ir"}},
		{"\u05d0\u05d1@example.org", []string{"\u05d0\u05d1@example.org"}}, // an RTL local part with an LTR domain
		{"ann", []string{"ANN"}}, // not an address: counted as given, folded like a local part
	}
	owner := map[string]string{}
	for _, g := range groups {
		if prev, dup := owner[g.key]; dup {
			t.Fatalf("key %q in two groups (%q)", g.key, prev)
		}
		owner[g.key] = g.ins[0]
		for _, in := range g.ins {
			got, err := lockout.NormalizeEmail(in)
			if assert.NoError(t, err, "%+q", in) {
				assert.Equal(t, g.key, got, "%+q", in)
			}
		}
	}
	for _, tc := range []struct{ in, reason string }{
		{"an\u200dn@example.org", "contains a joiner or other character out of context"}, // ZWJ in an ASCII name
		{"an\u200cn@example.org", "contains a joiner or other character out of context"}, // ZWNJ in an ASCII name
		{"ann@exa\u200dmple.org", "contains a joiner or other character out of context"},
		{"\u24d0nn@example.org", "contains a disallowed character"}, // circled ⓐ in the local part
		{"\u24b6nn@example.org", "contains a disallowed character"}, // circled Ⓐ
		{"ann smith@example.org", "contains a disallowed character"},
		{"an\u2603n@example.org", "contains a disallowed character"},              // a symbol
		{"ann@exa mple.org", "contains a disallowed character"},                   // a space in the domain
		{"\u05d0a@example.org", "fails the Bidi Rule"},                            // RTL and LTR in one local part
		{"ann@\u05d0a.example", "fails the Bidi Rule"},                            // … in one label
		{strings.Repeat("\uff41", 309) + "@example.org", "longer than 320 bytes"}, // 321 bytes once folded
	} {
		got, err := lockout.NormalizeEmail(tc.in)
		var ee *lockout.EmailError
		if assert.ErrorAs(t, err, &ee, "%+q", tc.in) {
			assert.Equal(t, tc.reason, ee.Reason, "%+q", tc.in)
		}
		assert.Empty(t, got)
	}
	// Length is checked on the trimmed, folded key, not on the input.
	long := strings.Repeat("a", 308) + "@example.org"
	for _, in := range []string{
		long + strings.Repeat(" ", 2000),
		strings.Repeat("\t", 2000) + long,
		strings.Repeat("\uff41", 308) + "@example.org", // 936 bytes, 320 once folded
	} {
		got, err := lockout.NormalizeEmail(in)
		assert.NoError(t, err)
		assert.Equal(t, long, got)
	}
}

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{
		"ann@example.org", " Ann@Example.ORG ", "E\u0301lise@example.org", "\u0130stanbul@x.tr",
		"", "\x00", "a\xffb", "\u212a@x", "ß@x", strings.Repeat("é", 200), "\u0345\u0399@x",
		"\uff41\uff4e\uff4e@example.org", "o\ufb00ice@e\ufb00.org", "\u24d0nn@\u24d4x.org", "\u017f\u0131\u00df@x",
		"an\u200dn@x", "an\u200cn@x", "ann@\u0645\u06cc\u200c\u0631.ir", "ann\uff20x\u3002org.", "ann@\u3392.x",
		"\u05d0a@x", "a@b@c", "@", "ann@", "ann@.", strings.Repeat(" ", 2000) + "ann@x",
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
		assert.Equal(t, got, norm.NFC.String(cases.Fold().String(got)), "case-folded")
		assert.Equal(t, got, width.Fold.String(got), "width-folded")
		// Wide and upper-case spellings of the key count as the key.
		wide := strings.Map(func(r rune) rune {
			if '!' <= r && r <= '~' {
				return r - '!' + '\uff01'
			}
			return r
		}, got)
		if again, err := lockout.NormalizeEmail(wide); assert.NoError(t, err, "wide %+q", wide) {
			assert.Equal(t, got, again, "wide %+q", wide)
		}
		up := strings.ToUpper(got)
		if again, err := lockout.NormalizeEmail(up); assert.NoError(t, err, "upper %+q", up) {
			assert.Equal(t, got, again, "upper %+q", up)
		}
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
