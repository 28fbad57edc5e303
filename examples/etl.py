"""A pipeline's worker: extract → clean → transform → validate → load a CSV into DuckDB.

    swarmlog agent start examples.etl:Etl --detach
    swarmlog submit pipeline --stage extract --stage clean --stage transform \\
        --stage validate --stage load \\
        --data '{"csv": "examples/data/orders.csv", "db": "/tmp/warehouse.duckdb"}' --wait

Each stage's output is the next stage's input, and carries the paths along. Cleaning drops what
cannot be repaired and says why; validation fails the pipeline, naming the stage, if anything
wrong is left; loading replaces the tables in the DuckDB file and reads the totals back.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from typing import Any

import duckdb

from examples.files import allowed
from swarmlog import Agent, Context, TaskAssignment, TaskError, on


class Etl(Agent):
    role = "etl"
    capabilities = ("extract", "clean", "transform", "validate", "load")

    @on(TaskAssignment)
    async def stage(self, task: TaskAssignment, ctx: Context) -> object:
        data = task.input
        if not isinstance(data, dict):
            raise TaskError("bad_input", "a stage gets an object", retryable=False)
        run = {
            "extract": extract,
            "clean": clean,
            "transform": transform,
            "validate": validate,
            "load": load,
        }
        return run[task.capability](data)


def extract(data: dict[str, Any]) -> dict[str, Any]:
    path = allowed(str(data["csv"]))
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"csv": str(path), "db": data["db"], "rows": rows, "extracted": len(rows)}


def _amount(text: str) -> float:
    return float(text.strip().replace("$", "").replace(",", ""))


def clean(data: dict[str, Any]) -> dict[str, Any]:
    kept: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    for row in data["rows"]:
        order_id = row["order_id"].strip()
        if order_id in seen:
            dropped["duplicate order"] += 1
            continue
        customer = row["customer"].strip()
        if not customer:
            dropped["no customer"] += 1
            continue
        try:
            day = dt.date.fromisoformat(row["date"].strip())
        except ValueError:
            dropped["bad date"] += 1
            continue
        try:
            quantity = int(row["quantity"])
            price = _amount(row["unit_price"])
        except ValueError:
            dropped["bad number"] += 1
            continue
        if quantity <= 0:
            dropped["non-positive quantity"] += 1
            continue
        seen.add(order_id)
        kept.append(
            {
                "order_id": int(order_id),
                "date": day.isoformat(),
                "customer": customer,
                "region": row["region"].strip().lower(),
                "product": row["product"].strip().lower(),
                "quantity": quantity,
                "unit_price": price,
            }
        )
    return {
        "db": data["db"],
        "rows": kept,
        "kept": len(kept),
        "dropped": dict(sorted(dropped.items())),
    }


def transform(data: dict[str, Any]) -> dict[str, Any]:
    rows = [{**r, "total": round(r["quantity"] * r["unit_price"], 2)} for r in data["rows"]]
    return {"db": data["db"], "rows": rows, "dropped": data["dropped"]}


def validate(data: dict[str, Any]) -> dict[str, Any]:
    problems = []
    for r in data["rows"]:
        if r["region"] not in {"north", "south", "east", "west"}:
            problems.append(f"order {r['order_id']}: unknown region {r['region']!r}")
        if r["total"] <= 0 or r["unit_price"] <= 0:
            problems.append(f"order {r['order_id']}: non-positive amount")
    if problems:
        raise TaskError("invalid_rows", "; ".join(problems[:5]), retryable=False)
    return {**data, "validated": len(data["rows"])}


def load(data: dict[str, Any]) -> dict[str, Any]:
    db = allowed(str(data["db"]))
    rows = data["rows"]
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE OR REPLACE TABLE orders (order_id INTEGER PRIMARY KEY, date DATE,"
            " customer TEXT, region TEXT, product TEXT, quantity INTEGER,"
            " unit_price DECIMAL(10, 2), total DECIMAL(12, 2))"
        )
        con.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    r["order_id"],
                    r["date"],
                    r["customer"],
                    r["region"],
                    r["product"],
                    r["quantity"],
                    r["unit_price"],
                    r["total"],
                ]
                for r in rows
            ],
        )
        con.execute(
            "CREATE OR REPLACE TABLE region_totals AS SELECT region, count(*) AS orders,"
            " sum(total) AS revenue FROM orders GROUP BY region"
        )
        regions = con.execute(
            "SELECT region, orders, revenue FROM region_totals ORDER BY revenue DESC"
        ).fetchall()
        loaded = con.execute("SELECT count(*) FROM orders").fetchone()
    return {
        "db": str(db),
        "loaded": loaded[0] if loaded else 0,
        "dropped": data["dropped"],
        "revenue_by_region": {region: float(revenue) for region, _, revenue in regions},
    }
