// Command post sends one request with Go's own HTTP/2 client and prints the status code, a
// space and the body, so tests can check what Go programs (kube-apiserver among them) receive.
//
//	post -ca CA.pem -method POST -type text/plain -size 4194304 https://127.0.0.1:PORT/mutate
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	caFile := flag.String("ca", "", "PEM file of the CA that signed the server's certificate")
	method := flag.String("method", "POST", "request method")
	contentType := flag.String("type", "application/json", "Content-Type, empty for none")
	size := flag.Int("size", 0, "bytes of request body (spaces)")
	flag.Parse()
	if flag.NArg() != 1 || *caFile == "" {
		fmt.Fprintln(os.Stderr, "usage: post -ca CA.pem [-method M] [-type T] [-size N] URL")
		os.Exit(2)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fail(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fail(fmt.Errorf("no certificate in %s", *caFile))
	}
	client := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "localhost"},
			ForceAttemptHTTP2: true,
		},
	}
	req, err := http.NewRequest(*method, flag.Arg(0), bytes.NewReader(bytes.Repeat([]byte(" "), *size)))
	if err != nil {
		fail(err)
	}
	if *contentType != "" {
		req.Header.Set("Content-Type", *contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fail(err)
	}
	if resp.ProtoMajor != 2 {
		fail(fmt.Errorf("spoke %s, not HTTP/2", resp.Proto))
	}
	fmt.Printf("%d %s", resp.StatusCode, body)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "post:", err)
	os.Exit(1)
}
