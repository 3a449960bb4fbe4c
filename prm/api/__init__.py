"""REST API v1 of the core domain (partners, activity kinds, activities, deals, certifications)."""
