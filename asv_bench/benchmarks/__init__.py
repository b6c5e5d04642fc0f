"""asv benchmarks for csoftmax (see asv_bench/asv.conf.json)."""
