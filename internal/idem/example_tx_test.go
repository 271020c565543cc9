package idem_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/klozd/api/ent"
	"github.com/klozd/api/internal/idem"
)

// ExampleConfig_transactional runs a handler in the middleware's
// transaction: the order it inserts (in a table of the example's own,
// through the transaction's ExecContext, as ent's sql/execquery feature
// offers) and the stored response commit together or not at all, and the
// client hears only what committed. The retry is a replay: one order.
func ExampleConfig_transactional() {
	db, done := exampleDB()
	defer done()
	if _, err := db.Exec(`CREATE TABLE example_orders (id serial PRIMARY KEY, sku text NOT NULL)`); err != nil {
		panic(err)
	}
	createOrder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx := ent.TxFromContext(r.Context()) // the middleware's transaction, as an ent transaction
		body, _ := io.ReadAll(r.Body)
		rows, err := tx.QueryContext(r.Context(), `INSERT INTO example_orders (sku) VALUES ($1) RETURNING id`, string(body))
		if err != nil {
			http.Error(w, "cannot create the order", http.StatusInternalServerError) // a 5xx rolls back
			return
		}
		var id int
		for rows.Next() {
			_ = rows.Scan(&id)
		}
		_ = rows.Close()
		w.Header().Set("Location", fmt.Sprintf("/orders/%d", id))
		w.WriteHeader(http.StatusCreated)
	})
	mux := http.NewServeMux()
	mux.Handle("POST /orders", idem.Middleware(idem.Config{
		Store:         idem.NewStore(db, idem.StoreConfig{}),
		Transactional: true,
	})(createOrder))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader("sku-1"))
		req.Header.Set("Idempotency-Key", "order-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		_ = resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("Location"), "replayed:", resp.Header.Get("Idempotent-Replayed") == "true")
	}
	var n int
	_ = db.QueryRow(`SELECT count(*) FROM example_orders`).Scan(&n)
	fmt.Println("orders:", n)
	// Output:
	// 201 /orders/1 replayed: false
	// 201 /orders/1 replayed: true
	// orders: 1
}
