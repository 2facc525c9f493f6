/* placeholder: being written */
#include <stddef.h>
extern int popmesh_dnssel_placeholder;
