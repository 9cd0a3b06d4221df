module irsa-webhook/tests/post

go 1.24
