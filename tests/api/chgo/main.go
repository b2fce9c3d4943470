// Command chgo runs SQL through clickhouse-go over HTTP with the options Grafana's ClickHouse
// data source (v4.x, pkg/plugin/driver.go) sets, and prints each result as JSON: the tests
// compare it with the same query run directly on the store.
//
// Usage: chgo -addr 127.0.0.1:8123 -user grafana -password-file FILE -database tokenotel [-ca-file CA.crt] QUERIES.json
// (-ca-file: over HTTPS, trusting only the CA certificates in that PEM file, as the data source
// does with "TLS/SSL Auth Details" and a CA certificate set) where QUERIES.json is [{"name": "...", "sql": "..."}, ...]; prints [{"name", "columns",
// "rows", "error"}, ...].
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

type query struct {
	Name string `json:"name"`
	SQL  string `json:"sql"`
}

type column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type result struct {
	Name    string   `json:"name"`
	Columns []column `json:"columns"`
	Rows    [][]any  `json:"rows"`
	Error   string   `json:"error,omitempty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8123", "host:port of the ClickHouse HTTP interface")
	user := flag.String("user", "grafana", "user name")
	passwordFile := flag.String("password-file", "", "file holding the password")
	database := flag.String("database", "tokenotel", "default database")
	caFile := flag.String("ca-file", "", "PEM CA certificates: connect over HTTPS trusting only these")
	flag.Parse()
	if flag.NArg() != 1 || *passwordFile == "" {
		fmt.Fprintln(os.Stderr, "usage: chgo -addr HOST:PORT -user NAME -password-file FILE [-database DB] QUERIES.json")
		os.Exit(2)
	}
	password, err := os.ReadFile(*passwordFile)
	fail(err)
	text, err := os.ReadFile(flag.Arg(0))
	fail(err)
	var queries []query
	fail(json.Unmarshal(text, &queries))
	var tlsConfig *tls.Config // nil: plain HTTP
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		fail(err)
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fail(fmt.Errorf("no PEM certificate in %s", *caFile))
		}
		tlsConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}

	// As the plugin's Connect does for protocol http (dialTimeout 10, queryTimeout 60, the
	// defaults our data source file sets; no custom settings; TLS only with -ca-file).
	dialTimeout, queryTimeout := 10*time.Second, 60*time.Second
	db := clickhouse.OpenDB(&clickhouse.Options{
		Addr: []string{*addr},
		Auth: clickhouse.Auth{
			Database: *database,
			Username: *user,
			Password: strings.TrimRight(string(password), "\r\n"),
		},
		ClientInfo: clickhouse.ClientInfo{Products: []struct{ Name, Version string }{
			{Name: "grafana", Version: "11.6.0"},
			{Name: "clickhouse-datasource", Version: "4.10.0"},
		}},
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionGZIP},
		DialTimeout: dialTimeout,
		HttpHeaders: map[string]string{},
		Protocol:    clickhouse.HTTP,
		ReadTimeout: queryTimeout,
		Settings:    clickhouse.Settings{},
		TLS:         tlsConfig,
	})
	defer db.Close()
	// The plugin's pool defaults (connMaxLifetime 5 min, maxIdleConns 25, maxOpenConns 50).
	db.SetConnMaxLifetime(5 * time.Minute)
	db.SetMaxIdleConns(25)
	db.SetMaxOpenConns(50)
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	fail(db.PingContext(ctx))
	cancel()

	results := make([]result, 0, len(queries))
	for _, q := range queries {
		results = append(results, run(db, q, queryTimeout))
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", " ")
	fail(out.Encode(results))
}

// run executes one query as sqlds does: QueryContext under the data source's query timeout
// (which clickhouse-go also sends as max_execution_time).
func run(db *sql.DB, q query, timeout time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res := result{Name: q.Name, Columns: []column{}, Rows: [][]any{}}
	rows, err := db.QueryContext(ctx, q.SQL)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	for _, t := range types {
		res.Columns = append(res.Columns, column{Name: t.Name(), Type: t.DatabaseTypeName()})
	}
	for rows.Next() {
		targets := make([]any, len(types))
		for i, t := range types {
			targets[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(targets...); err != nil {
			res.Error = err.Error()
			return res
		}
		row := make([]any, len(targets))
		for i, target := range targets {
			row[i] = plain(reflect.ValueOf(target).Elem())
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		res.Error = err.Error()
	}
	return res
}

// plain turns a scanned value into JSON the test can compare: times as microseconds since
// the epoch, addresses as text, non-finite floats as strings, pointers followed (nil: null).
func plain(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	switch x := v.Interface().(type) {
	case time.Time:
		return map[string]int64{"unix_us": x.UnixMicro()}
	case net.IP:
		return x.String()
	case *big.Int:
		return x.String()
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Sprint(x)
		}
		return x
	case float32:
		return plain(reflect.ValueOf(float64(x)))
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return plain(v.Elem())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return []any{}
		}
		items := make([]any, v.Len())
		for i := range items {
			items[i] = plain(v.Index(i))
		}
		return items
	case reflect.Map:
		items := map[string]any{}
		for _, key := range v.MapKeys() {
			items[fmt.Sprint(plain(key))] = plain(v.MapIndex(key))
		}
		return items
	}
	return v.Interface()
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "chgo:", err)
		os.Exit(1)
	}
}
