"""Everything about MOCO that its API document does not give: one place, each configurable.

Each entry is marked `# not in the vendor document`. An instance overrides paths through
`options.resource_paths` / `options.command_paths` and the rest through `options`.
"""

from __future__ import annotations

# Collection paths. The document shows only /projects, /customers and /offers.
RESOURCE_PATHS = {
    "projects": "/projects",  # shown in the document
    "offers": "/offers",  # shown in the document
    "companies": "/companies",  # not in the vendor document (it shows /customers for creation)
    "activities": "/activities",  # not in the vendor document
    "users": "/users",  # not in the vendor document
    "deals": "/deals",  # not in the vendor document
    "invoices": "/invoices",  # not in the vendor document
}

# X-Moco-Target values that name a resource differently from its collection, so that
# webhook and polled events of one record share a subject (and so a partition).
TARGET_RESOURCES = {
    "Customer": "company",  # not in the vendor document: the document lists "Customer"
    "Company": "company",  # not in the vendor document
}

# MOCO's own precision is seconds ("2018-10-17T09:33:46Z" style): re-read this far back.
DEFAULT_OVERLAP_S = 2.0  # not in the vendor document
