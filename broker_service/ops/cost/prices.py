"""AWS list prices: a data file per region, with the date and the source of every price.

``load_prices("us-east-1")`` reads ``prices_us_east_1.json`` next to this module;
``load_prices(path=...)`` reads any file of the same shape (another region, a negotiated
discount, a price change): the model never holds a price itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

PRICES_DIR = Path(__file__).parent


class Price(BaseModel):
    """One list price: ``usd`` for every ``per`` units of ``unit``."""

    model_config = ConfigDict(extra="forbid")

    usd: float = Field(ge=0)
    per: float = Field(default=1, gt=0)
    unit: str
    source: str
    confirmed_by: str = ""
    note: str = ""

    def cost(self, quantity: float) -> float:
        return quantity / self.per * self.usd


class InstanceType(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd_per_hour: float = Field(ge=0)
    vcpu: int
    memory_gib: float
    network_baseline_gbps: float = Field(gt=0)
    ebs_baseline_mbps: float = Field(gt=0, description="baseline EBS bandwidth, MB/s")
    source: str
    note: str = ""

    @property
    def network_baseline_mbps(self) -> float:
        """Baseline network bandwidth in MB/s (10^6 bytes), as the model counts traffic."""
        return self.network_baseline_gbps * 1000 / 8


class Prices(BaseModel):
    """Every price the model uses; a region file missing one is refused when loaded."""

    model_config = ConfigDict(extra="forbid")

    fargate_vcpu_hour: Price
    fargate_gb_hour: Price
    s3_standard_gb_month_first_50tb: Price
    s3_standard_gb_month_next_450tb: Price
    s3_standard_gb_month_over_500tb: Price
    s3_put_requests: Price
    s3_get_requests: Price
    dynamodb_write_request_units: Price
    dynamodb_read_request_units: Price
    dynamodb_write_capacity_unit_hour: Price
    dynamodb_read_capacity_unit_hour: Price
    dynamodb_storage_gb_month: Price
    lambda_requests: Price
    lambda_gb_second: Price
    nlb_hour: Price
    nlb_nlcu_hour: Price
    cross_az_gb: Price
    ebs_gp3_gb_month: Price
    ebs_gp3_mbps_month: Price
    cloudwatch_metric_month: Price
    cloudwatch_logs_ingest_gb: Price
    cloudwatch_alarm_month: Price
    nat_gateway_hour: Price
    nat_gateway_gb: Price
    vpc_endpoint_hour: Price
    vpc_endpoint_gb: Price


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str
    currency: str
    as_of: str
    note: str = ""
    prices: Prices
    instances: dict[str, InstanceType]

    def instance(self, name: str) -> InstanceType:
        try:
            return self.instances[name]
        except KeyError:
            known = ", ".join(sorted(self.instances))
            raise ValueError(
                f"no price for instance type {name!r} in {self.region} (known: {known})"
            ) from None


def region_file(region: str) -> Path:
    return PRICES_DIR / f"prices_{region.replace('-', '_')}.json"


def available_regions() -> list[str]:
    return sorted(
        p.stem.removeprefix("prices_").replace("_", "-") for p in PRICES_DIR.glob("prices_*.json")
    )


def load_prices(region: str = "us-east-1", path: Path | None = None) -> PriceTable:
    """The price table of ``region`` shipped with the package, or the file at ``path``."""
    if path is None:
        path = region_file(region)
        if not path.exists():
            raise FileNotFoundError(
                f"no price file for region {region!r} (have: {', '.join(available_regions())}); "
                f"write one like {region_file('us-east-1').name} and pass it with --prices"
            )
    return PriceTable.model_validate_json(path.read_text())
