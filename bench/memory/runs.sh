#!/bin/sh
# go build -o /tmp/mem-coredns ./cmd/coredns first (commit 9b2f59c for the recorded results).
# The measurements of /work/notes/item2.md; run from the checkout.
set -x
go run ./bench/memory -coredns /tmp/mem-coredns -sizes small,4k,64k -queries 15000
go run ./bench/memory -coredns /tmp/mem-coredns -sizes cname64k -queries 1000
go run ./bench/memory -coredns /tmp/mem-coredns -sizes 4k -queries 15000 -answers 65536 -options 'buffer_size 50000'
go run ./bench/memory -coredns /tmp/mem-coredns -sizes 64k,cname64k -queries 1000 -answers 65536 -options 'buffer_size 50000'
go run ./bench/memory -coredns /tmp/mem-coredns -sizes 64k -queries 15000 -control
go run ./bench/memory -coredns /tmp/mem-coredns -sizes cname64k -queries 1000 -control
