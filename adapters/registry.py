"""The vendors this build knows: adding a vendor is adding its folder and one line here.

Nothing that a vendor imports imports this module. The process hands `VENDORS` in where it is
needed: to the config loader (`load_config(path, vendors=VENDORS)`, see adapters.validation),
and to the tools that take vendor facts from it (`workbridge dev`, `workbridge schemas`, which
also writes the Helm chart's vendor-dependent schema and defaults).
"""

from __future__ import annotations

from adapters.clickmaint import SPEC as CLICKMAINT
from adapters.cloudworkpro import SPEC as CLOUDWORKPRO
from adapters.cmo import SPEC as CMO
from adapters.core.vendor import VendorSpec
from adapters.mobilitywork import SPEC as MOBILITYWORK
from adapters.moco import SPEC as MOCO

VENDORS: dict[str, VendorSpec] = {
    spec.id: spec for spec in (MOCO, MOBILITYWORK, CLICKMAINT, CMO, CLOUDWORKPRO)
}
