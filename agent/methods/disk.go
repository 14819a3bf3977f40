package methods

import "math/bits"

// usedPercent is df's Use%: ceil(used*100 / (used+avail)), 0 when both are 0.
// The arithmetic is 128-bit, so no block count can overflow it.
func usedPercent(used, avail uint64) float64 {
	total, carry := bits.Add64(used, avail, 0)
	if carry != 0 {
		used, total = used>>1, (used>>1)+(avail>>1)
	}
	if total == 0 {
		return 0
	}
	hi, lo := bits.Mul64(used, 100)
	pct, rem := bits.Div64(hi, lo, total) // hi < total because used <= total
	if rem != 0 {
		pct++
	}
	return float64(pct)
}
