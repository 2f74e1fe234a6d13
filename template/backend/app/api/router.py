"""Every versioned API route is mounted here, under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import api_keys, audit, auth, files, organizations, users

api_router = APIRouter()
api_router.include_router(auth.router)
api_router.include_router(users.router)
api_router.include_router(organizations.router)
api_router.include_router(organizations.invitations)
api_router.include_router(files.router)
api_router.include_router(api_keys.router)
api_router.include_router(audit.router)
