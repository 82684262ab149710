module github.com/hakit/hakit

go 1.26
