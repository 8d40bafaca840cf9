"""The REST API: one APIRouter per resource."""
