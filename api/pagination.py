from rest_framework.pagination import PageNumberPagination

from api.errors import ApiError


class StrictPages(PageNumberPagination):
    """Pages of 50 (page_size up to 200). A malformed page or page_size is a 400, not ignored."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    page_query_description = "A page number, from 1."
    page_size_query_description = "Items per page, 1 to 200 (default 50); more is capped at 200."

    def paginate_queryset(self, queryset, request, view=None):
        for name in (self.page_query_param, self.page_size_query_param):
            value = request.query_params.get(name)
            if value is not None and not (value.isascii() and value.isdigit() and int(value) >= 1):
                raise ApiError(f"{name} must be a whole number from 1.", code="invalid_field", field=name)
        return super().paginate_queryset(queryset, request, view)
