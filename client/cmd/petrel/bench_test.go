package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Every value lands in a bucket whose top is at most 1% above it, buckets
// are in order, and the last one holds the largest value tracked.
func TestHistogramBuckets(t *testing.T) {
	if got := bucket(histMaxNs); got != histBuckets-1 {
		t.Fatalf("bucket(max) = %d, want %d", got, histBuckets-1)
	}
	check := func(ns uint64) {
		i := bucket(ns)
		top := bucketTop(i)
		if i < 0 || i >= histBuckets || top < ns || float64(top-ns) > 0.01*float64(ns) {
			t.Fatalf("%d ns: bucket %d, top %d", ns, i, top)
		}
		if i > 0 && bucketTop(i-1) >= ns {
			t.Fatalf("%d ns: bucket %d, but bucket %d reaches %d", ns, i, i-1, bucketTop(i-1))
		}
	}
	for ns := range uint64(1 << 12) {
		check(ns)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		check(r.Uint64N(histMaxNs + 1))
	}
	check(histMaxNs)
}

// Quantiles against the exact ones, from a sorted copy.
func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	r := rand.New(rand.NewPCG(3, 4))
	var all []time.Duration
	for range 10000 {
		d := time.Duration(r.ExpFloat64() * float64(200*time.Microsecond))
		all = append(all, d)
		h.add(d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		exact := all[int(q*float64(len(all)))-1]
		got := h.quantile(q)
		if got < exact || float64(got-exact) > 0.01*float64(exact) {
			t.Errorf("q%.2f: %v, exact %v", q, got, exact)
		}
	}
	if h.quantile(1) != all[len(all)-1] || h.max != all[len(all)-1] {
		t.Errorf("max %v, quantile(1) %v, exact %v", h.max, h.quantile(1), all[len(all)-1])
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Errorf("empty: %v", empty.quantile(0.5))
	}
	// Past the last bucket: counted there, the maximum still exact.
	h.add(time.Hour)
	if h.max != time.Hour || h.counts[histBuckets-1] != 1 {
		t.Errorf("an hour: max %v, last bucket %d", h.max, h.counts[histBuckets-1])
	}
}

func TestSig3(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		999:                        999,
		123456:                     123000,
		1234567 * time.Microsecond: 1230 * time.Millisecond,
		0:                          0,
	} {
		if got := sig3(d); got != want {
			t.Errorf("sig3(%v) = %v, want %v", d, got, want)
		}
	}
}
