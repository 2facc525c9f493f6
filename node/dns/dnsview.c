/* placeholder: being written */
#include <stddef.h>
extern int popmesh_dnsview_placeholder;
