"""API errors: one exception type carrying the HTTP status and OpenAI's error envelope fields.

Every failure a client can cause is raised as an `APIError` with a 4xx status and a message naming the problem;
the router turns it into `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

from vtg.serve.protocol import ErrorInfo, ErrorResponse


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type, param

    def envelope(self) -> dict:
        return ErrorResponse(
            error=ErrorInfo(message=self.message, type=self.type, param=self.param, code=self.status)
        ).model_dump()


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param)


def not_found(message: str, param: str | None = None) -> APIError:
    return APIError(404, message, type="not_found_error", param=param)


def forbidden(message: str, param: str | None = None) -> APIError:
    return APIError(403, message, type="permission_error", param=param)


def too_large(message: str, param: str | None = None) -> APIError:
    return APIError(413, message, type="request_too_large", param=param)


def unauthorized(message: str = "missing or wrong API key: send 'Authorization: Bearer <key>'") -> APIError:
    return APIError(401, message, type="authentication_error")


def overloaded(message: str) -> APIError:
    return APIError(429, message, type="rate_limit_error")


def timed_out(message: str) -> APIError:
    return APIError(408, message, type="timeout_error")


def unavailable(message: str) -> APIError:
    return APIError(503, message, type="service_unavailable")
