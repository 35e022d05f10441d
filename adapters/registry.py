"""The vendors this build knows: adding a vendor is adding its folder and one line here."""

from __future__ import annotations

from adapters.core.vendor import VendorSpec
from adapters.mobilitywork import SPEC as MOBILITYWORK
from adapters.moco import SPEC as MOCO

VENDORS: dict[str, VendorSpec] = {spec.id: spec for spec in (MOCO, MOBILITYWORK)}
