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

# Paths of the command catalogue: (path, guessed). The document creates customers at
# /customers; the records are "companies" elsewhere in MOCO.
COMMAND_PATHS = {
    "activity": ("/activities", True),  # not in the vendor document
    "project": ("/projects", False),
    "company": ("/companies", True),  # not in the vendor document
}

# Resources whose updates are merged with the current custom properties (the document
# shows custom fields on customers and says "many of its resources"; these are the ones the
# catalogue updates that carry them).
CUSTOM_PROPERTY_RESOURCES = frozenset({"project", "company"})  # not in the vendor document

# X-Moco-Target values that name a resource differently from its collection, so that
# webhook and polled events of one record share a subject (and so a partition).
TARGET_RESOURCES = {
    "Customer": "company",  # not in the vendor document: the document lists "Customer"
    "Company": "company",  # not in the vendor document
}

# The document shows X-Per-Page in answers but names no request parameter for it.
PAGE_SIZE_PARAM = "per_page"  # not in the vendor document
