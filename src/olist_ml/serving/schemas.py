"""The API's request and response models and its limits (`olist_ml.serving.api` builds the app).

(No `from __future__ import annotations`: FastAPI reads the annotations as objects.)
"""

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

TOKEN_ENV = "OLIST_ML_API_TOKEN"
MAX_BODY_ENV = "OLIST_ML_API_MAX_BODY_BYTES"
MAX_BATCH_ENV = "OLIST_ML_API_MAX_BATCH"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024  # 10 MiB: a full batch of 10,000 orders is about 5 MB
DEFAULT_MAX_BATCH = 10_000
ECHO_CHARS = 100  # at most this much of a client's input comes back in an error
MAX_ERRORS = 10  # validation errors listed in a 422 body
MAX_CATEGORY_CHARS = 200  # a categorical override longer than this is not a category value


# ---------------------------------------------------------------------------------------
# request / response models
# ---------------------------------------------------------------------------------------
MAX_COUNT = 1_000_000  # items, products, sellers, payments, installments of one order: far above any real one
MAX_DAYS = 36_500


MAX_EXPLAIN = 1000  # ?explain=k: more than the model's features returns them all


class ErrorOut(BaseModel):
    """Every failure: one line."""

    detail: str


class ValidationItem(BaseModel):
    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorOut(BaseModel):
    """A 422: one line, and for a request the schema refuses, its first errors (each clipped)."""

    detail: str
    errors: list[ValidationItem] | None = None


class Reason(BaseModel):
    feature: str = Field(description="the model's input feature (a feature-store or ABT column)")
    value: float | str | None = Field(description="its value in the scored row (null: missing)")
    reference: float | str | None = Field(
        description="what it is compared with: the training mean on the model's scale (linear models), "
        "the training median or most common value (trees)"
    )
    contribution: float = Field(description="its contribution to the margin (positive: raises the score)")
    text: str = Field(description="a sentence: 'no sale for 38 days; sellers median 6 days'")


class Explained(BaseModel):
    reasons: list[Reason] | None = Field(
        None, description="?explain=k: the k largest contributions to the margin (largest |contribution| first)"
    )
    margin: float | None = Field(
        None, description="?explain=k: the model's margin (log-odds; hazard GLM: -log expected events) = base + sum"
    )
    base: float | None = Field(None, description="?explain=k: the margin of the reference row")


class ChurnScore(Explained):
    seller_id: str
    score: float = Field(description="P(seller churns within the horizon)")
    model_name: str
    model_version: str
    dt_ref: date = Field(description="reference date of the features used")


class BatchChurnOut(BaseModel):
    model_name: str
    model_version: str
    dt_ref: date
    results: list[ChurnScore]
    unknown: list[str] = Field(description="seller ids not in the population at dt_ref")


class OrderIn(BaseModel):
    """Raw attributes of one order, new or in flight (Olist column names; items summed).

    The server scores the order at its scoring date D (the date `olist-ml predict delay` scores by
    default: the observed end of the served warehouse; the response's `check_point` says which row
    was scored). An order bought before D is IN FLIGHT: it is scored by its state at D -- approved
    (`order_approved_at`) and handed to a carrier (`order_delivered_carrier_date`) if those happened
    before D -- with days in flight, days since the hand-over, days left to its promise and the
    market as it stood at D. An order bought at or after D is NEW: it is scored at approval. An order
    in flight whose promise date has passed is late for certain: score 1.0, `past_promise` true.

    The server computes the order_delay ABT's whole feature row from the attributes with the ABT's
    own SQL (`olist_ml.problems.order_delay.request_frame`): order features (freight_ratio,
    promised_days, shipping_limit_days, approval_hours, distance_km from the customer's and the
    seller's zip prefixes, same_state, purchase month/weekday, business days and holidays to the
    promise), the delivery context of the days before the purchase date (route_*, cstate_*, market_*,
    seller_*_due/overdue_*, promise_slack_days) and the in-flight state and market at the check point
    (days_in_flight, handed_to_carrier, days_since_carrier, days_left, now_*). Locations absent from
    the request come from the warehouse (customer_id -> stg_customers, seller_id -> stg_sellers).
    order_purchase_timestamp defaults to now (UTC). A field named like an ABT feature (e.g.
    `distance_km`, `promised_days`, or an extra one such as `route_pct_late_90d`) overrides the
    computed value. Champion features that end up NULL are left to the model's imputer and listed in
    the response's `imputed`; `?strict=true` refuses (422) an order whose own attributes leave a
    champion feature NULL.

    Any other field must be a feature of the served champion and carry its declared type (a finite
    number for a numeric feature, a string for a categorical one): an unknown field or a wrong type
    is a 422 naming the field."""

    model_config = ConfigDict(
        extra="allow",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "order_id": "o-1",
                    "seller_id": "3442f8959a84dea7ee197c632cb2df15",
                    "customer_state": "SP",
                    "customer_zip_code_prefix": "01310",
                    "order_purchase_timestamp": "2018-08-01T10:00:00",
                    "order_approved_at": "2018-08-01T10:20:00",
                    "order_estimated_delivery_date": "2018-08-15T00:00:00",
                    "shipping_limit_date": "2018-08-07T10:20:00",
                    "order_value": 58.9,
                    "freight_value": 13.29,
                    "n_items": 1,
                    "product_category": "health_beauty",
                    "payment_type": "credit_card",
                    "payment_installments": 1,
                }
            ]
        },
    )
    order_id: str | None = Field(None, max_length=64)
    seller_id: str = Field(min_length=1, max_length=64)
    customer_id: str | None = Field(None, max_length=64, description="known customer: location from stg_customers")
    order_status: str | None = Field(None, max_length=20, description="default: approved")
    customer_state: str | None = Field(None, min_length=2, max_length=2, description="two-letter UF")
    customer_zip_code_prefix: str | None = Field(None, min_length=1, max_length=8)
    seller_state: str | None = Field(None, min_length=2, max_length=2, description="default: stg_sellers")
    seller_zip_code_prefix: str | None = Field(None, min_length=1, max_length=8, description="default: stg_sellers")
    order_purchase_timestamp: datetime | None = Field(None, description="default: now (UTC)")
    order_approved_at: datetime | None = None
    order_delivered_carrier_date: datetime | None = Field(
        None, description="when a carrier took the order (in flight: counts when before the scoring date)"
    )
    order_estimated_delivery_date: datetime = Field(
        description="the promised delivery date (required: without it the order's promise and days left, its "
        "strongest inputs, would be imputed and the score would be a population average)"
    )
    shipping_limit_date: datetime | None = None
    order_value: float | None = Field(None, ge=0, description="sum of item prices")
    freight_value: float | None = Field(None, ge=0)
    n_items: int | None = Field(None, ge=1, le=MAX_COUNT)
    n_products: int | None = Field(None, ge=1, le=MAX_COUNT)
    n_sellers: int | None = Field(None, ge=1, le=MAX_COUNT)
    total_weight_g: float | None = Field(None, ge=0)
    max_item_weight_g: float | None = Field(None, ge=0)
    total_volume_cm3: float | None = Field(None, ge=0)
    product_category: str | None = Field(None, max_length=100, description="English category name")
    payment_type: str | None = Field(None, max_length=40)
    payment_installments: int | None = Field(None, ge=0, le=MAX_COUNT)
    n_payments: int | None = Field(None, ge=1, le=MAX_COUNT)
    promised_days: int | None = Field(None, ge=0, le=MAX_DAYS, description="override (default: from the dates)")
    shipping_limit_days: int | None = Field(None, ge=-MAX_DAYS, le=MAX_DAYS, description="override")
    approval_hours: float | None = Field(None, ge=0, description="override")
    distance_km: float | None = Field(None, ge=0, description="override (default: from the zip prefixes)")


class DelayScore(Explained):
    order_id: str | None
    seller_id: str
    score: float = Field(description="P(order is delivered after its estimated date)")
    check_point: date = Field(
        description="the date of the scored row: the scoring date for an order in flight, "
        "the purchase date for a new order (its row at approval)"
    )
    in_flight: bool = Field(description="bought before the scoring date: scored by its state at that date")
    past_promise: bool = Field(False, description="in flight past its promised date: late for certain (score 1.0)")
    seller_known: bool = Field(description="False: the seller has no feature row at dt_ref")
    imputed: list[str] = Field(default_factory=list, description="champion features left NULL for the model to impute")
    model_name: str
    model_version: str
    dt_ref: date | None


class BatchDelayOut(BaseModel):
    model_name: str
    model_version: str
    dt_ref: date | None
    results: list[DelayScore]


class AtRiskSeller(BaseModel):
    rank: int
    seller_id: str
    p_churn: float
    expected_gmv: float = Field(description="GMV expected over the churn horizon if retained (BRL)")
    value_at_risk: float = Field(description="p_churn x expected_gmv (BRL)")
    segment: str | None = None
    reasons: list[str] = Field(default_factory=list, description="the score's top reasons, as sentences")


class AtRiskOrder(BaseModel):
    rank: int
    order_id: str
    seller_id: str | None = None
    p_late: float
    days_left: int | None = Field(None, description="days from the list's date to the promised date")
    carrier_status: str | None = None
    reasons: list[str] = Field(default_factory=list)


class _Page(BaseModel):
    dt_ref: date = Field(description="the date the list ranks (its scores' dt_ref)")
    model_version: str
    total: int = Field(description="rows in the whole list")
    page: int
    page_size: int


class AtRiskSellers(_Page):
    results: list[AtRiskSeller]


class AtRiskOrders(_Page):
    results: list[AtRiskOrder]


BATCH_FIELDS = ("seller_ids", "orders")


def batch_models(max_batch: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """(BatchChurnIn, BatchDelayIn) with this app's batch limit: pydantic stops at item max_batch + 1
    (nothing more is validated) and the limit shows in the OpenAPI schema (maxItems)."""
    limit = f"at most {max_batch} (server setting --max-batch / {MAX_BATCH_ENV})"

    class BatchChurnIn(BaseModel):
        model_config = ConfigDict(
            extra="forbid", json_schema_extra={"examples": [{"seller_ids": ["3442f8959a84dea7ee197c632cb2df15"]}]}
        )
        seller_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
            min_length=1, max_length=max_batch, description=f"seller ids, {limit}"
        )

    class BatchDelayIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        orders: list[OrderIn] = Field(min_length=1, max_length=max_batch, description=f"orders, {limit}")

    return BatchChurnIn, BatchDelayIn
