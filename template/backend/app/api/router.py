"""Every versioned API route is mounted here, under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

api_router = APIRouter()
